"""The operators' dashboard figures: sales, charts, channel success and the lists that need a hand. Read-only.

One entry point, `dashboard_figures()`, returns frozen dataclasses a template renders as they are, and
`Dashboard.chart_data()` the plain dict Chart.js is fed with (`{{ figures.chart_data|json_script:"..." }}`).
Risk's decisions per hour are a figure of their own, `risk_decisions_figures()` (shown to those who may read
assessments, whoever may see orders).

What counts:
- "Paid" and revenue are by the time an order was paid (`paid_at`), not when it was created: gross, so an order
  paid today and refunded today is in both `paid` and `refunded` (shown apart; `net` is their difference).
  `refunded` is the orders whose refund completed in the window (`refunded_at`), whenever they were paid.
  "Created" counts every order placed in the window, whatever became of it.
- Every amount stays in its currency: one line (and one revenue dataset) per currency, never a sum across.
- Windows are in the shop's time zone (settings.TIME_ZONE): today is shop-time midnight to `now`, the week
  starts on Monday 00:00, the charts bucket by shop-time hour (today) and day (the last 14 days, today
  included); every window ends at `now` (inclusive). Buckets are cut by the database (Trunc* with the shop's
  tzinfo), so PostgreSQL and SQLite agree, and empty buckets are zeros.
- The method mix is the payments that collected money in the last 7 days (by success time), per method; channel
  success is per channel account, over the payments created in the last 24 hours and 7 days.
- `merchant` scopes the order and product figures; payments know no merchants, so the method mix, channel
  success and open refunds stay platform-wide.
- Risk's decisions are every assessment made (checkout and payment start alike) in the last 24 shop-time hours,
  the current one included, per hour and decision; risk knows no merchants either.

Queries: 15 on the database whatever the amount of data (sales 1, hourly chart 2, daily chart 2, low stock 1,
manual deliveries 1, undeliverable 1, waiting for review 1, orders in refund 1, open refunds 2 (1 when there are
none), method mix 1, channel success 2); risk's decisions are one more, grouped query. Plus one read of the breaker store per channel window and, at most once per few seconds per
process, the routing knobs (a cached row).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum, Window
from django.db.models.functions import Coalesce, TruncDate, TruncHour
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from cardshop.models import CardSecret, DeliveryKind, Order, OrderState, Product, SecretStatus
from cardshop.payment_methods import METHOD_LABELS
from core.admin_display import major_str, money_label
from core.models import Merchant
from core.money import Money
from payments import facade as payments
from payments.contracts import REFUND_STATUS_LABELS, ChannelOutcomes
from risk import facade as risk
from risk.contracts import DECISION_LABELS, Decision

LIST_LIMIT = 10
CHART_DAYS = 14
METHOD_MIX_DAYS = 7
RISK_HOURS = 24

# The words of the channel health page (payments/admin.py), so a breaker reads the same everywhere.
BREAKER_LABELS = {
    "closed": _("in use (automatic)"),
    "open": _("not used: too many failures (automatic)"),
    "half_open": _("probing with a few payments (automatic)"),
    "forced_open": _("not used (set by an operator)"),
    "forced_closed": _("in use whatever its health (set by an operator)"),
    "": _("unknown"),
}

T = TypeVar("T")


def shop_tz() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


# ---- sales ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurrencySales:
    """One currency's orders in a window. Amounts in minor units; `paid`, `refunded`, `net` as Money."""

    currency: str
    created_orders: int
    paid_orders: int
    paid_minor: int
    refunded_orders: int
    refunded_minor: int

    @property
    def paid(self) -> Money:
        return Money(self.paid_minor, self.currency)

    @property
    def refunded(self) -> Money:
        return Money(self.refunded_minor, self.currency)

    @property
    def net(self) -> Money:
        return Money(self.paid_minor - self.refunded_minor, self.currency)

    @property
    def paid_label(self) -> str:
        return money_label(self.paid_minor, self.currency)

    @property
    def refunded_label(self) -> str:
        return money_label(self.refunded_minor, self.currency)

    @property
    def net_label(self) -> str:
        return money_label(self.paid_minor - self.refunded_minor, self.currency)


@dataclass(frozen=True)
class SalesWindow:
    label: Promise | str
    since: datetime
    until: datetime
    lines: tuple[CurrencySales, ...]  # by currency code

    @property
    def created_orders(self) -> int:
        return sum(line.created_orders for line in self.lines)

    @property
    def paid_orders(self) -> int:
        return sum(line.paid_orders for line in self.lines)

    @property
    def refunded_orders(self) -> int:
        return sum(line.refunded_orders for line in self.lines)


# ---- charts -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevenueSeries:
    currency: str
    minor: tuple[int, ...]  # one per bucket

    @property
    def values(self) -> tuple[str, ...]:
        """Major units as exact decimal strings ("9.90"): Chart.js reads them as numbers."""
        return tuple(major_str(m, self.currency) for m in self.minor)


@dataclass(frozen=True)
class TimeSeries:
    """Buckets in shop time, oldest first: `starts` are aware datetimes in the shop's zone."""

    labels: tuple[str, ...]
    starts: tuple[datetime, ...]
    created_orders: tuple[int, ...]
    paid_orders: tuple[int, ...]
    revenue: tuple[RevenueSeries, ...]  # one per currency, by code

    def chart(self) -> dict:
        return {
            "labels": list(self.labels),
            "orders": [
                {"label": str(_("Orders created")), "data": list(self.created_orders)},
                {"label": str(_("Orders paid")), "data": list(self.paid_orders)},
            ],
            "revenue": [
                {
                    "label": str(_("Revenue (%(currency)s)") % {"currency": r.currency}),
                    "currency": r.currency,
                    "data": list(r.values),
                }
                for r in self.revenue
            ],
        }


# ---- payments ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodShare:
    """Payments that collected money through one method; amounts one per currency, by code."""

    method: str
    label: Promise | str
    payments: int
    amounts: tuple[Money, ...]

    @property
    def amount_labels(self) -> tuple[str, ...]:
        return tuple(str(m) for m in self.amounts)


@dataclass(frozen=True)
class ChannelWindow:
    attempts: int
    succeeded: int
    failed: int
    closed: int
    open: int

    @property
    def decided(self) -> int:
        return self.attempts - self.open

    @property
    def success_rate(self) -> float | None:
        """Percent of the attempts that ended (succeeded, failed or closed) which succeeded, to one decimal;
        None when none ended. Attempts still open are left out: a buyer still on the pay page is no failure."""
        return round(100 * self.succeeded / self.decided, 1) if self.decided else None

    @property
    def success_rate_label(self) -> str:
        rate = self.success_rate
        return "—" if rate is None else f"{rate:.1f} %"


@dataclass(frozen=True)
class ChannelRow:
    account_id: int
    channel_code: str
    account_name: str
    enabled: bool
    breaker_state: str
    last_24h: ChannelWindow
    last_7d: ChannelWindow

    @property
    def breaker_label(self) -> Promise | str:
        return BREAKER_LABELS.get(self.breaker_state, self.breaker_state)


# ---- lists ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing(Generic[T]):
    """The first rows of a list (at most LIST_LIMIT) and how many there are in all."""

    rows: tuple[T, ...]
    total: int

    @property
    def more(self) -> int:
        return self.total - len(self.rows)


@dataclass(frozen=True)
class ProductRow:
    pk: int
    name: str
    slug: str
    free_stock: int
    price_minor: int
    currency: str

    @property
    def price_label(self) -> str:
        return money_label(self.price_minor, self.currency)


@dataclass(frozen=True)
class OrderRow:
    pk: int
    order_no: str
    product_pk: int
    product_name: str
    quantity: int
    amount_minor: int
    currency: str
    state: str
    created_at: datetime
    paid_at: datetime | None

    @property
    def amount_label(self) -> str:
        return money_label(self.amount_minor, self.currency)

    @property
    def state_label(self) -> Promise | str:
        return OrderState(self.state).label if self.state in OrderState.values else self.state


@dataclass(frozen=True)
class RefundRow:
    refund_no: str
    status: str
    channel_code: str
    amount_minor: int
    currency: str
    reason: str
    requested_by: str
    order_no: str
    order_pk: int | None  # None: no order has that number (never expected; the row still shows)
    product_name: str
    order_state: str

    @property
    def amount_label(self) -> str:
        return money_label(self.amount_minor, self.currency)

    @property
    def status_label(self) -> Promise | str:
        return REFUND_STATUS_LABELS.get(self.status, self.status)


# ---- the whole ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    now: datetime  # in the shop's time zone
    today: SalesWindow
    week: SalesWindow
    hourly: TimeSeries  # today, 00 to 23 shop time
    daily: TimeSeries  # the last CHART_DAYS days, today included
    methods: tuple[MethodShare, ...]  # the last METHOD_MIX_DAYS days, most used first
    channels: tuple[ChannelRow, ...]  # routing order
    low_stock: Listing[ProductRow]
    low_stock_threshold: int
    manual_delivery: Listing[OrderRow]  # oldest paid first
    undeliverable: Listing[OrderRow]  # oldest paid first
    review_waiting: Listing[OrderRow]  # held by risk for an operator, oldest first
    refunding_orders: int
    open_refunds: Listing[RefundRow]  # oldest first
    merchant_id: int | None = None

    def chart_data(self) -> dict:
        """Everything the charts draw, as JSON-able plain data (strings, ints, floats, None)."""
        currencies = sorted({m.currency for share in self.methods for m in share.amounts})
        return {
            "hourly": self.hourly.chart(),
            "daily": self.daily.chart(),
            "methods": {
                "labels": [str(m.label) for m in self.methods],
                "payments": [m.payments for m in self.methods],
                "amounts": [
                    {
                        "currency": c,
                        "data": [
                            next(
                                (a.to_decimal_str() for a in m.amounts if a.currency == c), Money(0, c).to_decimal_str()
                            )
                            for m in self.methods
                        ],
                    }
                    for c in currencies
                ],
            },
            "channels": {
                "labels": [c.account_name for c in self.channels],
                "success_rate_24h": [c.last_24h.success_rate for c in self.channels],
                "success_rate_7d": [c.last_7d.success_rate for c in self.channels],
                "attempts_24h": [c.last_24h.attempts for c in self.channels],
                "attempts_7d": [c.last_7d.attempts for c in self.channels],
            },
        }


def dashboard_figures(*, now: datetime | None = None, merchant: Merchant | None = None) -> Dashboard:
    """The dashboard as of `now` (default: this moment), for the whole shop or one merchant. See the module
    docstring for what each figure counts and the query budget."""
    if now is not None and timezone.is_naive(now):
        raise ValueError("now must be an aware datetime")
    tz = shop_tz()
    now = (now or timezone.now()).astimezone(tz)
    today_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week_start = today_start - timedelta(days=now.weekday())
    days_start = today_start - timedelta(days=CHART_DAYS - 1)

    orders = Order.objects.all()
    products = Product.objects.all()
    if merchant is not None:
        orders = orders.filter(merchant=merchant)
        products = products.filter(merchant=merchant)

    today, week = _sales(orders, today_start=today_start, week_start=week_start, now=now)
    hour_starts = tuple(today_start + timedelta(hours=h) for h in range(24))
    day_starts = tuple(days_start + timedelta(days=d) for d in range(CHART_DAYS))
    threshold = settings.CARDSHOP_LOW_STOCK_THRESHOLD
    return Dashboard(
        now=now,
        today=today,
        week=week,
        hourly=_series(
            orders,
            starts=hour_starts,
            labels=tuple(s.strftime("%H:00") for s in hour_starts),
            key=lambda b: (b.date(), b.hour),
            trunc=TruncHour,
            now=now,
        ),
        daily=_series(
            orders,
            starts=day_starts,
            labels=tuple(s.date().isoformat() for s in day_starts),
            key=lambda b: b.date() if isinstance(b, datetime) else b,
            trunc=TruncDate,
            now=now,
        ),
        methods=_methods(since=now - timedelta(days=METHOD_MIX_DAYS), until=now),
        channels=_channels(now=now),
        low_stock=_low_stock(products, threshold=threshold, now=now),
        low_stock_threshold=threshold,
        manual_delivery=_order_listing(
            orders.filter(state=OrderState.PAID, product__delivery_kind=DeliveryKind.MANUAL)
        ),
        undeliverable=_order_listing(orders.filter(state=OrderState.UNDELIVERABLE)),
        review_waiting=_order_listing(orders.filter(state=OrderState.REVIEW), by="created_at"),
        refunding_orders=orders.filter(state=OrderState.REFUNDING).count(),
        open_refunds=_open_refunds(),
        merchant_id=merchant.pk if merchant is not None else None,
    )


def _between(name: str, since: datetime, until: datetime) -> Q:
    return Q(**{f"{name}__gte": since, f"{name}__lte": until})


def _sales(
    orders: QuerySet[Order], *, today_start: datetime, week_start: datetime, now: datetime
) -> tuple[SalesWindow, SalesWindow]:
    """Today's and this week's lines per currency, in one grouped query."""
    windows = {"today": today_start, "week": week_start}
    aggregates = {}
    for w, since in windows.items():
        created, paid, refunded = (_between(f, since, now) for f in ("created_at", "paid_at", "refunded_at"))
        aggregates |= {
            f"{w}_created": Count("pk", filter=created),
            f"{w}_paid": Count("pk", filter=paid),
            f"{w}_paid_minor": Sum("amount_minor", filter=paid),
            f"{w}_refunded": Count("pk", filter=refunded),
            f"{w}_refunded_minor": Sum("amount_minor", filter=refunded),
        }
    earliest = min(windows.values())
    rows = list(
        orders.filter(
            _between("created_at", earliest, now)
            | _between("paid_at", earliest, now)
            | _between("refunded_at", earliest, now)
        )
        .order_by()
        .values("currency")
        .annotate(**aggregates)
        .order_by("currency")
    )

    def window(w: str, label: Promise, since: datetime) -> SalesWindow:
        lines = tuple(
            CurrencySales(
                currency=r["currency"],
                created_orders=r[f"{w}_created"],
                paid_orders=r[f"{w}_paid"],
                paid_minor=int(r[f"{w}_paid_minor"] or 0),
                refunded_orders=r[f"{w}_refunded"],
                refunded_minor=int(r[f"{w}_refunded_minor"] or 0),
            )
            for r in rows
            if r[f"{w}_created"] or r[f"{w}_paid"] or r[f"{w}_refunded"]
        )
        return SalesWindow(label=label, since=since, until=now, lines=lines)

    return window("today", _("Today"), today_start), window("week", _("This week"), week_start)


def _series(
    orders: QuerySet[Order],
    *,
    starts: tuple[datetime, ...],
    labels: tuple[str, ...],
    key: Callable[[datetime | date], Hashable],
    trunc: type[TruncHour] | type[TruncDate],
    now: datetime,
) -> TimeSeries:
    """Orders created and paid, and revenue per currency, per bucket; two grouped queries."""
    tz = shop_tz()
    since = starts[0]
    created = (
        orders.filter(_between("created_at", since, now))
        .annotate(bucket=trunc("created_at", tzinfo=tz))
        .order_by()
        .values("bucket")
        .annotate(n=Count("pk"))
    )
    paid = (
        orders.filter(_between("paid_at", since, now))
        .annotate(bucket=trunc("paid_at", tzinfo=tz))
        .order_by()
        .values("bucket", "currency")
        .annotate(n=Count("pk"), minor=Sum("amount_minor"))
    )
    index = {key(s): i for i, s in enumerate(starts)}
    created_n = [0] * len(starts)
    paid_n = [0] * len(starts)
    revenue: dict[str, list[int]] = {}
    for r in created:
        created_n[index[_bucket_key(r["bucket"], key, tz)]] += r["n"]
    for r in paid:
        i = index[_bucket_key(r["bucket"], key, tz)]
        paid_n[i] += r["n"]
        revenue.setdefault(r["currency"], [0] * len(starts))[i] += int(r["minor"] or 0)
    return TimeSeries(
        labels=labels,
        starts=starts,
        created_orders=tuple(created_n),
        paid_orders=tuple(paid_n),
        revenue=tuple(RevenueSeries(currency=c, minor=tuple(v)) for c, v in sorted(revenue.items())),
    )


def _bucket_key(bucket: datetime | date, key: Callable[[datetime | date], Hashable], tz: ZoneInfo) -> Hashable:
    if isinstance(bucket, datetime):
        bucket = bucket.astimezone(tz) if timezone.is_aware(bucket) else bucket.replace(tzinfo=tz)
    return key(bucket)


def _methods(*, since: datetime, until: datetime) -> tuple[MethodShare, ...]:
    by_method: dict[str, tuple[int, list[Money]]] = {}
    for t in payments.payment_totals_by_method(since=since, until=until):
        n, amounts = by_method.get(t.method, (0, []))
        by_method[t.method] = (n + t.payments, [*amounts, t.amount])
    shares = [
        MethodShare(
            method=m,
            label=METHOD_LABELS.get(m, m) if m else _("unknown method"),
            payments=n,
            amounts=tuple(sorted(amounts, key=lambda a: a.currency)),
        )
        for m, (n, amounts) in by_method.items()
    ]
    return tuple(sorted(shares, key=lambda s: (-s.payments, s.method)))


def _channels(*, now: datetime) -> tuple[ChannelRow, ...]:
    day = {c.account_id: c for c in payments.payment_outcomes_by_channel(since=now - timedelta(hours=24), until=now)}
    week = payments.payment_outcomes_by_channel(since=now - timedelta(days=7), until=now)

    def window(c: ChannelOutcomes | None) -> ChannelWindow:
        if c is None:  # an account added between the two reads
            return ChannelWindow(attempts=0, succeeded=0, failed=0, closed=0, open=0)
        return ChannelWindow(attempts=c.attempts, succeeded=c.succeeded, failed=c.failed, closed=c.closed, open=c.open)

    return tuple(
        ChannelRow(
            account_id=c.account_id,
            channel_code=c.channel_code,
            account_name=c.account_name,
            enabled=c.enabled,
            breaker_state=c.breaker_state,
            last_24h=window(day.get(c.account_id)),
            last_7d=window(c),
        )
        for c in week
    )


def _low_stock(products: QuerySet[Product], *, threshold: int, now: datetime) -> Listing[ProductRow]:
    """Unique-secret products on sale with fewer than `threshold` free secrets (a lapsed reservation is free)."""
    free = (
        CardSecret.objects.filter(product=OuterRef("pk"), status__in=[SecretStatus.AVAILABLE, SecretStatus.RESERVED])
        .filter(Q(status=SecretStatus.AVAILABLE) | Q(reserved_until__lt=now))
        .order_by()
        .values("product")
        .annotate(n=Count("pk"))
        .values("n")
    )
    rows = list(
        products.filter(is_active=True, delivery_kind=DeliveryKind.UNIQUE)
        .annotate(free=Coalesce(Subquery(free, output_field=IntegerField()), 0))
        .filter(free__lt=threshold)
        .annotate(total=Window(expression=Count("pk")))
        .order_by("free", "sort_order", "pk")
        .values("pk", "name", "slug", "free", "price_minor", "currency", "total")[:LIST_LIMIT]
    )
    return Listing(
        rows=tuple(
            ProductRow(
                pk=r["pk"],
                name=r["name"],
                slug=r["slug"],
                free_stock=r["free"],
                price_minor=r["price_minor"],
                currency=r["currency"],
            )
            for r in rows
        ),
        total=rows[0]["total"] if rows else 0,
    )


_ORDER_ROW_FIELDS = (
    "pk",
    "order_no",
    "product_id",
    "product__name",
    "quantity",
    "amount_minor",
    "currency",
    "state",
    "created_at",
    "paid_at",
)


def _order_listing(orders: QuerySet[Order], *, by: str = "paid_at") -> Listing[OrderRow]:
    """Oldest first by `by` (the longest wait on top); one query, the total as a window count."""
    rows = list(
        orders.annotate(total=Window(expression=Count("pk")))
        .order_by(by, "pk")
        .values(*_ORDER_ROW_FIELDS, "total")[:LIST_LIMIT]
    )
    return Listing(
        rows=tuple(
            OrderRow(
                pk=r["pk"],
                order_no=r["order_no"],
                product_pk=r["product_id"],
                product_name=r["product__name"],
                quantity=r["quantity"],
                amount_minor=r["amount_minor"],
                currency=r["currency"],
                state=r["state"],
                created_at=r["created_at"],
                paid_at=r["paid_at"],
            )
            for r in rows
        ),
        total=rows[0]["total"] if rows else 0,
    )


def _open_refunds() -> Listing[RefundRow]:
    """Refunds not final yet (payments), each with its order for the admin link: two queries."""
    page = payments.refunds_open(limit=LIST_LIMIT)
    refs = {r.reference for r in page.rows}
    by_no = (
        {
            o["order_no"]: o
            for o in Order.objects.filter(order_no__in=refs).values("pk", "order_no", "product__name", "state")
        }
        if refs
        else {}
    )
    rows = []
    for r in page.rows:
        o = by_no.get(r.reference, {})
        rows.append(
            RefundRow(
                refund_no=r.refund_no,
                status=str(r.status),
                channel_code=r.channel_code,
                amount_minor=r.amount.amount_minor,
                currency=r.amount.currency,
                reason=r.reason,
                requested_by=r.requested_by,
                order_no=r.reference,
                order_pk=o.get("pk"),
                product_name=o.get("product__name", ""),
                order_state=o.get("state", ""),
            )
        )
    return Listing(rows=tuple(rows), total=page.total)


# ---- risk's decisions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionSeries:
    """Risk's decisions per shop-time hour, oldest first: `counts[decision]` holds one count per hour, every
    decision present (zeros included), in Decision order."""

    now: datetime  # in the shop's time zone
    labels: tuple[str, ...]
    starts: tuple[datetime, ...]
    counts: dict[Decision, tuple[int, ...]]

    @property
    def totals(self) -> tuple[tuple[Decision, str, int], ...]:
        """(decision, its label, assessments over the whole window), in Decision order."""
        return tuple((d, str(DECISION_LABELS[d]), sum(self.counts[d])) for d in Decision)

    def chart(self) -> dict:
        return {
            "labels": list(self.labels),
            "datasets": [
                {"decision": d.value, "label": str(DECISION_LABELS[d]), "data": list(self.counts[d])} for d in Decision
            ],
        }


def risk_decisions_figures(*, now: datetime | None = None, hours: int = RISK_HOURS) -> DecisionSeries:
    """Assessments per decision in each of the last `hours` shop-time hours, the current (partial) one last: one
    grouped query (risk counts, the zeros are laid out here)."""
    if now is not None and timezone.is_naive(now):
        raise ValueError("now must be an aware datetime")
    tz = shop_tz()
    now = (now or timezone.now()).astimezone(tz)
    # Stepped in UTC, so a daylight-saving change neither repeats nor skips an hour.
    current = now.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    starts = tuple((current - timedelta(hours=h)).astimezone(tz) for h in range(hours - 1, -1, -1))
    key = lambda b: (b.date(), b.hour)  # noqa: E731  (as the hourly orders chart keys its buckets)
    index = {key(s): i for i, s in enumerate(starts)}
    counts = {d: [0] * len(starts) for d in Decision}
    for row in risk.decisions_by_hour(since=starts[0], until=now, tz=tz):
        counts[row.decision][index[_bucket_key(row.hour, key, tz)]] += row.assessments
    return DecisionSeries(
        now=now,
        labels=tuple(s.strftime("%H:00") for s in starts),
        starts=starts,
        counts={d: tuple(c) for d, c in counts.items()},
    )
