"""The ledger's invariant check (nightly beat and `manage.py ledger_check`) and the record of each run.

`ledger_check()` reads, never writes, and finds:
  (a) a kept balance row (BALANCE_ROW_KINDS) that differs from the sum of its account's entries;
  (b) a currency whose accounts do not sum to zero;
  (c) a transaction whose lines do not sum to zero in some currency (or that has no lines);
  (d) a succeeded payment with no `sale:<out_trade_no>` nor `suspense:<out_trade_no>` posting, and a sale or
      suspense posting whose trade never took money;
  (e) a final (succeeded) refund with no `refund:<refund_no>` posting, and a refund posting with no such refund;
and lists (f) suspense postings older than N days that nothing has moved out yet (a sale or a refund of the same
trade), and (g) years the holiday file does not declare although money is held until then, or the year is this
one (or next, from December): T+N releases in such a year count Monday to Friday only, so a public holiday
there would pay out as a working day. (f) and (g) are to-do lists for operators, not drift: they do not make a
run fail.

Postings are matched by idempotency key (`<kind>:<natural key>`), the one convention every posting service
shares, so the check holds whichever service wrote them. Payments are read through payments.facade. Each
check is one or two aggregate queries, whatever the size of the ledger. Must not import cardshop.

`LedgerCheckRun` lives here rather than in models.py (SettlementConfig.import_models loads this module), so the
check and its record change together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce, ExtractYear
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from payments import facade as payments
from settlement.calendar import holiday_file, work_calendar
from settlement.models import (
    BALANCE_ROW_KINDS,
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    ReleaseState,
    SaleRelease,
    TransactionKind,
)

SALE_PREFIX = "sale:"
SUSPENSE_PREFIX = "suspense:"
REFUND_PREFIX = "refund:"


# --- findings ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    code: ClassVar[str] = ""

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, **asdict(self)}


@dataclass(frozen=True)
class BalanceRowDrift(Finding):
    """(a) The kept balance (normal side) is not what the account's entries add up to."""

    code: ClassVar[str] = "balance_row_drift"
    account_id: int
    account: str
    currency: str
    kept_minor: int
    entries_minor: int


@dataclass(frozen=True)
class CurrencyUnbalanced(Finding):
    """(b) All accounts of this currency sum (raw, debit +) to `sum_minor`, not zero."""

    code: ClassVar[str] = "currency_unbalanced"
    currency: str
    sum_minor: int


@dataclass(frozen=True)
class TransactionUnbalanced(Finding):
    """(c) One transaction's lines in one currency sum to `sum_minor`, not zero (or it has no lines: 0 lines)."""

    code: ClassVar[str] = "transaction_unbalanced"
    transaction_id: int
    key: str
    currency: str
    sum_minor: int
    lines: int


@dataclass(frozen=True)
class PaymentUnposted(Finding):
    """(d) A payment took money and the ledger has neither its sale nor its suspense posting."""

    code: ClassVar[str] = "payment_unposted"
    out_trade_no: str


@dataclass(frozen=True)
class PostingWithoutPayment(Finding):
    """(d)/(e) A sale, suspense or refund posting whose payment or refund never succeeded."""

    code: ClassVar[str] = "posting_without_payment"
    transaction_id: int
    key: str


@dataclass(frozen=True)
class PostingKindMismatch(Finding):
    """(d)/(e) A posting keyed `sale:` / `suspense:` / `refund:` whose kind says something else."""

    code: ClassVar[str] = "posting_kind_mismatch"
    transaction_id: int
    key: str
    kind: str


@dataclass(frozen=True)
class RefundUnposted(Finding):
    """(e) A refund is final and the ledger has no `refund:<refund_no>` reversal."""

    code: ClassVar[str] = "refund_unposted"
    refund_no: str
    out_trade_no: str


@dataclass(frozen=True)
class StaleSuspense(Finding):
    """(f) Money in suspense for longer than the setting allows: someone has to deliver or refund it."""

    code: ClassVar[str] = "suspense_stale"
    transaction_id: int
    key: str
    out_trade_no: str
    amount_minor: int
    currency: str
    posted_at: str  # ISO 8601
    age_days: int


@dataclass(frozen=True)
class CalendarUncovered(Finding):
    """(g) The holiday file declares no `year` line for this year: its public holidays are unknown."""

    code: ClassVar[str] = "calendar_uncovered"
    year: int
    held_releases: int  # sales whose pending money is due in that year
    file: str


@dataclass(frozen=True)
class CheckResult:
    """`problems` are drift (a run with any is not ok); `stale_suspense` and `notices` are listed for operators."""

    problems: tuple[Finding, ...]
    stale_suspense: tuple[StaleSuspense, ...]
    counts: dict[str, int] = field(default_factory=dict)
    notices: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


# --- the check ---------------------------------------------------------------------------------------------------


def _normal_side(kind: str, raw: int) -> int:
    return -raw if AccountKind(kind).credit_normal else raw


def _balance_rows() -> tuple[list[Finding], int]:
    rows = (
        LedgerAccount.objects.filter(kind__in=sorted(BALANCE_ROW_KINDS))
        .annotate(raw=Coalesce(Sum("entries__amount_minor"), 0))
        .order_by("pk")
    )
    found: list[Finding] = []
    checked = 0
    for account in rows:
        checked += 1
        entries = _normal_side(account.kind, account.raw)
        if account.balance_minor != entries:
            found.append(
                BalanceRowDrift(
                    account_id=account.pk,
                    account=str(account),
                    currency=account.currency,
                    kept_minor=account.balance_minor if account.balance_minor is not None else 0,
                    entries_minor=entries,
                )
            )
    return found, checked


def _currencies() -> list[Finding]:
    sums = LedgerEntry.objects.values("currency").annotate(s=Sum("amount_minor")).filter(~Q(s=0)).order_by("currency")
    return [CurrencyUnbalanced(currency=row["currency"], sum_minor=row["s"]) for row in sums]


def _transactions() -> list[Finding]:
    unbalanced = (
        LedgerEntry.objects.values("transaction_id", "transaction__idempotency_key", "currency")
        .annotate(s=Sum("amount_minor"), n=Count("pk"))
        .filter(~Q(s=0))
        .order_by("transaction_id", "currency")
    )
    found: list[Finding] = [
        TransactionUnbalanced(
            transaction_id=row["transaction_id"],
            key=row["transaction__idempotency_key"],
            currency=row["currency"],
            sum_minor=row["s"],
            lines=row["n"],
        )
        for row in unbalanced
    ]
    for txn_id, key in (
        LedgerTransaction.objects.filter(entries__isnull=True).order_by("pk").values_list("pk", "idempotency_key")
    ):
        found.append(TransactionUnbalanced(transaction_id=txn_id, key=key, currency="", sum_minor=0, lines=0))
    return found


def _keyed_postings() -> dict[str, tuple[int, str, datetime]]:
    """{key: (transaction id, kind, created_at)} of every posting keyed by a payment or a refund."""
    rows = (
        LedgerTransaction.objects.filter(
            Q(idempotency_key__startswith=SALE_PREFIX)
            | Q(idempotency_key__startswith=SUSPENSE_PREFIX)
            | Q(idempotency_key__startswith=REFUND_PREFIX)
        )
        .order_by("pk")
        .values_list("idempotency_key", "pk", "kind", "created_at")
    )
    return {key: (pk, kind, created_at) for key, pk, kind, created_at in rows}


_KIND_OF_PREFIX = {
    SALE_PREFIX: TransactionKind.SALE,
    SUSPENSE_PREFIX: TransactionKind.SUSPENSE,
    REFUND_PREFIX: TransactionKind.REFUND,
}


def _payments_and_refunds(
    postings: dict[str, tuple[int, str, datetime]], paid: list[str], refunds: dict[str, str]
) -> list[Finding]:
    found: list[Finding] = []
    paid_set = set(paid)
    for out_trade_no in paid:
        if SALE_PREFIX + out_trade_no not in postings and SUSPENSE_PREFIX + out_trade_no not in postings:
            found.append(PaymentUnposted(out_trade_no=out_trade_no))
    for refund_no, out_trade_no in refunds.items():
        if REFUND_PREFIX + refund_no not in postings:
            found.append(RefundUnposted(refund_no=refund_no, out_trade_no=out_trade_no))
    for key, (txn_id, kind, _created) in postings.items():
        prefix = next(p for p in _KIND_OF_PREFIX if key.startswith(p))
        natural = key[len(prefix) :]
        if kind != _KIND_OF_PREFIX[prefix]:
            found.append(PostingKindMismatch(transaction_id=txn_id, key=key, kind=kind))
        known = refunds if prefix == REFUND_PREFIX else paid_set
        if natural not in known:
            found.append(PostingWithoutPayment(transaction_id=txn_id, key=key))
    return found


def _stale_suspense(
    postings: dict[str, tuple[int, str, datetime]], refunds: dict[str, str], *, days: int, now: datetime
) -> list[StaleSuspense]:
    refunded_trades = {
        out_trade_no for refund_no, out_trade_no in refunds.items() if REFUND_PREFIX + refund_no in postings
    }
    cutoff = now - timedelta(days=days)
    stale = {
        key: (txn_id, created)
        for key, (txn_id, kind, created) in postings.items()
        if key.startswith(SUSPENSE_PREFIX)
        and created < cutoff
        and SALE_PREFIX + key[len(SUSPENSE_PREFIX) :] not in postings
        and key[len(SUSPENSE_PREFIX) :] not in refunded_trades
    }
    if not stale:
        return []
    # What each stale posting put into suspense (its credit there), in one query.
    amounts = {
        row["transaction_id"]: (row["s"], row["currency"])
        for row in LedgerEntry.objects.filter(
            transaction_id__in=[txn_id for txn_id, _ in stale.values()], account__kind=AccountKind.SUSPENSE
        )
        .values("transaction_id", "currency")
        .annotate(s=Sum("amount_minor"))
    }
    listed = []
    for key, (txn_id, created) in sorted(stale.items(), key=lambda item: item[1][1]):
        raw, currency = amounts.get(txn_id, (0, ""))
        listed.append(
            StaleSuspense(
                transaction_id=txn_id,
                key=key,
                out_trade_no=key[len(SUSPENSE_PREFIX) :],
                amount_minor=-raw,  # suspense is credit-normal: what it holds reads positive
                currency=currency,
                posted_at=created.isoformat(),
                age_days=(now - created).days,
            )
        )
    return listed


def _calendar_notices(now: datetime) -> list[CalendarUncovered]:
    """(g): the years held releases fall due in, this year, and from December the next, less the declared ones."""
    calendar = work_calendar()
    today = timezone.localtime(now).date()
    due = {
        row["year"]: row["n"]
        for row in SaleRelease.objects.filter(pending_state=ReleaseState.HELD)
        .annotate(year=ExtractYear("pending_due_at"))  # in the shop's time zone (USE_TZ, TIME_ZONE)
        .values("year")
        .annotate(n=Count("pk"))
    }
    years = {today.year, *due, *([today.year + 1] if today.month == 12 else [])}
    return [
        CalendarUncovered(year=year, held_releases=due.get(year, 0), file=str(holiday_file()))
        for year in calendar.uncovered_years(*(date(y, 1, 1) for y in years))
    ]


def suspense_max_days() -> int:
    return int(getattr(settings, "SETTLEMENT_SUSPENSE_MAX_DAYS", 7))


def ledger_check(*, suspense_days: int | None = None, now: datetime | None = None) -> CheckResult:
    """Check every invariant of the ledger (module docstring). Reads only; about ten queries in all."""
    days = suspense_max_days() if suspense_days is None else suspense_days
    now = now or timezone.now()
    problems: list[Finding] = []
    drift, balance_rows = _balance_rows()
    problems += drift
    problems += _currencies()
    problems += _transactions()
    postings = _keyed_postings()
    paid = payments.payments_succeeded_out_trade_nos()
    refunds = payments.refunds_succeeded()
    problems += _payments_and_refunds(postings, paid, refunds)
    stale = _stale_suspense(postings, refunds, days=days, now=now)
    counts = {
        "balance_rows": balance_rows,
        "transactions": LedgerTransaction.objects.count(),
        "payments": len(paid),
        "refunds": len(refunds),
    }
    notices = _calendar_notices(now)
    return CheckResult(problems=tuple(problems), stale_suspense=tuple(stale), counts=counts, notices=tuple(notices))


# --- the record of each run --------------------------------------------------------------------------------------


class LedgerCheckRun(models.Model):
    """One run of the invariant check: what it found, kept so the admin shows the last one."""

    started_at = models.DateTimeField(_("started at"), db_index=True)
    finished_at = models.DateTimeField(_("finished at"))
    ok = models.BooleanField(_("ok"))
    problem_count = models.PositiveIntegerField(_("problems"))
    stale_suspense_count = models.PositiveIntegerField(_("suspense past its time"), default=0)
    problems = models.JSONField(_("problems found"), default=list, blank=True)
    stale_suspense = models.JSONField(_("suspense past its time (list)"), default=list, blank=True)
    counts = models.JSONField(_("what was checked"), default=dict, blank=True)
    notices = models.JSONField(_("notices"), default=list, blank=True)

    class Meta:
        app_label = "settlement"
        verbose_name = _("ledger check run")
        verbose_name_plural = _("ledger check runs")
        ordering = ["-started_at", "-pk"]

    def __str__(self) -> str:
        return f"{timezone.localtime(self.started_at):%Y-%m-%d %H:%M} {'ok' if self.ok else self.problem_count}"


def ledger_check_run(*, suspense_days: int | None = None) -> LedgerCheckRun:
    """Run the check and store its result (the beat job and the command both come here)."""
    started = timezone.now()
    result = ledger_check(suspense_days=suspense_days, now=started)
    return LedgerCheckRun.objects.create(
        started_at=started,
        finished_at=timezone.now(),
        ok=result.ok,
        problem_count=len(result.problems),
        stale_suspense_count=len(result.stale_suspense),
        problems=[p.as_dict() for p in result.problems],
        stale_suspense=[s.as_dict() for s in result.stale_suspense],
        counts=result.counts,
        notices=[n.as_dict() for n in result.notices],
    )


def ledger_check_last() -> LedgerCheckRun | None:
    return LedgerCheckRun.objects.order_by("-started_at", "-pk").first()
