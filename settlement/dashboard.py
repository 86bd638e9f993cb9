"""The settlement dashboard's figures: what the ledger booked per shop day and currency, and the last ledger check.
Read-only; must not import cardshop.

One entry point, `settlement_figures()`, returns frozen dataclasses a template renders as they are, and
`SettlementDashboard.chart_data()` the plain dict Chart.js is fed with.

What counts (each figure is the movement of its accounts, read on their normal side, in the sale and refund
postings of the day; releases, payouts, suspense and adjustments move money between a party's own accounts or
are not sales, so they are left out):
- gross sales: what sale postings booked, the sum of their debits (channel clearing + channel fee expense, or
  suspense for a sale out of suspense), which is the sale's gross;
- refunded: what refund postings took back on the channel side (the credits to channel clearing and fee expense,
  less a suspense debit: a refund of money held in suspense was never a sale and counts zero). That is the
  refunded gross, plus the channel's fee when the channel keeps it and the plan makes the merchant bear it (the
  merchant is debited that fee too, and the platform's fee expense recovers it);
- gross volume: gross sales minus refunded (net of refunds). Since every posting balances, for any day
  gross volume = platform revenue + agent commissions + merchant net + reserve;
- channel fees (channel fee expense), platform revenue, agent commissions (every agent, every level), merchant
  net (merchant pending + available, and owed when a refund or a T+0 sale settles it) and reserve: net of
  refunds, since a refund posting reverses its sale's lines on the same accounts.
- Every amount stays in its currency: one line per currency, never a sum across.
- Days are shop days (settings.TIME_ZONE), cut by the database (TruncDate with the shop's tzinfo) on the
  posting's `created_at`; the window is the last `days` days, today (up to `now`, inclusive) included; empty
  days are zeros.

Queries: 2 (the entries grouped by day, currency, posting kind and account kind; the last check run).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.admin_display import major_str, money_label
from settlement.checks import LedgerCheckRun
from settlement.models import AccountKind, LedgerEntry, TransactionKind

DEFAULT_DAYS = 30

# Account kinds by figure, as strings: "merchant_owed" arrives with the refund postings.
CHANNEL_SIDE = ("channel_clearing", "channel_fee_expense", "suspense")
MERCHANT_NET = ("merchant_pending", "merchant_available", "merchant_owed")
FIGURES = (
    "gross",
    "gross_sales",
    "refunded",
    "channel_fees",
    "platform_revenue",
    "agent_commissions",
    "merchant_net",
    "reserve",
)

FIGURE_LABELS = {
    "gross": _("Gross volume"),
    "gross_sales": _("Gross sales"),
    "refunded": _("Refunded"),
    "channel_fees": _("Channel fees"),
    "platform_revenue": _("Platform revenue"),
    "agent_commissions": _("Agent commissions"),
    "merchant_net": _("Merchant net"),
    "reserve": _("Reserve"),
}


def shop_tz() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


@dataclass(frozen=True)
class Figures:
    """One day's (or the window's) figures in one currency, in minor units (module docstring)."""

    currency: str
    gross_sales: int = 0
    refunded: int = 0
    channel_fees: int = 0
    platform_revenue: int = 0
    agent_commissions: int = 0
    merchant_net: int = 0
    reserve: int = 0

    @property
    def gross(self) -> int:
        return self.gross_sales - self.refunded

    def minor(self, name: str) -> int:
        return getattr(self, name)

    def label(self, name: str) -> str:
        return money_label(self.minor(name), self.currency)

    @property
    def cards(self) -> tuple[tuple[Any, str], ...]:
        """(label, "9.90 CNY") for every figure, in FIGURES order: what a card lists."""
        return tuple((FIGURE_LABELS[name], self.label(name)) for name in FIGURES)


@dataclass(frozen=True)
class CurrencySeries:
    """One currency over the window: `days` oldest first (one per shop day), `total` their sum."""

    currency: str
    days: tuple[Figures, ...]
    total: Figures

    def values(self, name: str) -> list[str]:
        """Major units as exact decimal strings ("9.90"): Chart.js reads them as numbers."""
        return [major_str(day.minor(name), self.currency) for day in self.days]


@dataclass(frozen=True)
class CheckRun:
    started_at: datetime
    finished_at: datetime
    ok: bool
    problem_count: int
    pk: int


@dataclass(frozen=True)
class SettlementDashboard:
    now: datetime  # in the shop's time zone
    dates: tuple[date, ...]  # shop days, oldest first
    currencies: tuple[CurrencySeries, ...]  # by code; only currencies with a posting in the window
    last_check: CheckRun | None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(d.isoformat() for d in self.dates)

    def chart_data(self) -> dict:
        """Everything the charts draw, as JSON-able plain data: per currency, one list per figure."""
        return {
            "labels": list(self.labels),
            "currencies": [
                {"currency": c.currency, **{name: c.values(name) for name in FIGURES}} for c in self.currencies
            ],
        }


def _figures(currency: str, sums: dict[tuple[str, str], int]) -> Figures:
    """Figures from raw (debit +) sums keyed by (posting kind, account kind)."""

    def raw(kind: str, *accounts: str) -> int:
        return sum(sums.get((kind, a), 0) for a in accounts)

    def both(*accounts: str) -> int:
        return raw(TransactionKind.SALE, *accounts) + raw(TransactionKind.REFUND, *accounts)

    return Figures(
        currency=currency,
        gross_sales=raw(TransactionKind.SALE, *CHANNEL_SIDE),
        refunded=-raw(TransactionKind.REFUND, *CHANNEL_SIDE),
        channel_fees=both(AccountKind.CHANNEL_FEE_EXPENSE),
        platform_revenue=-both(AccountKind.PLATFORM_REVENUE),
        agent_commissions=-both(AccountKind.AGENT_COMMISSION_PAYABLE),
        merchant_net=-both(*MERCHANT_NET),
        reserve=-both(AccountKind.MERCHANT_RESERVE),
    )


def _total(currency: str, days: tuple[Figures, ...]) -> Figures:
    fields = (
        "gross_sales",
        "refunded",
        "channel_fees",
        "platform_revenue",
        "agent_commissions",
        "merchant_net",
        "reserve",
    )
    return Figures(currency=currency, **{f: sum(getattr(d, f) for d in days) for f in fields})


def last_check_run() -> CheckRun | None:
    """The latest ledger check run, or None when none has run."""
    run = LedgerCheckRun.objects.order_by("-started_at", "-pk").first()
    if run is None:
        return None
    return CheckRun(
        started_at=run.started_at,
        finished_at=run.finished_at,
        ok=run.ok,
        problem_count=run.problem_count,
        pk=run.pk,
    )


def settlement_figures(*, now: datetime | None = None, days: int = DEFAULT_DAYS) -> SettlementDashboard:
    """The last `days` shop days up to `now` (default: this moment), per currency; see the module docstring."""
    if now is not None and timezone.is_naive(now):
        raise ValueError("now must be an aware datetime")
    if days < 1:
        raise ValueError("days must be at least 1")
    tz = shop_tz()
    now = (now or timezone.now()).astimezone(tz)
    today = now.date()
    dates = tuple(today - timedelta(days=d) for d in range(days - 1, -1, -1))
    since = datetime.combine(dates[0], datetime.min.time(), tzinfo=tz)

    rows = (
        LedgerEntry.objects.filter(
            transaction__kind__in=[TransactionKind.SALE, TransactionKind.REFUND],
            transaction__created_at__gte=since,
            transaction__created_at__lte=now,
        )
        .annotate(day=TruncDate("transaction__created_at", tzinfo=tz))
        .order_by()
        .values("day", "currency", "transaction__kind", "account__kind")
        .annotate(raw=Sum("amount_minor"))
    )
    sums: dict[str, dict[date, dict[tuple[str, str], int]]] = {}
    for r in rows:
        day = r["day"].date() if isinstance(r["day"], datetime) else r["day"]
        by_day = sums.setdefault(r["currency"], {}).setdefault(day, {})
        key = (r["transaction__kind"], r["account__kind"])
        by_day[key] = by_day.get(key, 0) + int(r["raw"] or 0)

    currencies = []
    for currency in sorted(sums):
        series = tuple(_figures(currency, sums[currency].get(d, {})) for d in dates)
        currencies.append(CurrencySeries(currency=currency, days=series, total=_total(currency, series)))
    return SettlementDashboard(now=now, dates=dates, currencies=tuple(currencies), last_check=last_check_run())
