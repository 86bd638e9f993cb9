"""The operators' dashboard figures (cardshop.dashboard), against orders placed at known shop-time moments.

The shop runs on Asia/Shanghai (UTC+8). `NOW` is Wednesday 2026-12-02 14:00 there (06:00 UTC): today began at
2026-12-01 16:00 UTC and the week on Monday 2026-11-30 00:00, which is Sunday 2026-11-29 16:00 UTC.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.db.models import Count, Q, Sum

from cardshop.dashboard import LIST_LIMIT, dashboard_figures
from cardshop.models import CardSecret, DeliveryKind, Order, OrderState, Product, SecretStatus
from core.money import Money
from payments import breaker
from payments.contracts import PaymentStatus, RefundStatus
from payments.models import PAID_STATES, ChannelAccount, Payment, Refund
from tests.factories.cardshop import OrderFactory, ProductFactory
from tests.factories.core import MerchantFactory
from tests.factories.payments import EpayAccountFactory, PaymentFactory, RefundFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


def utc(day: int, hour: int, minute: int = 0, month: int = 12) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def order(product, state, *, created, paid=None, refunded=None, quantity=1, **kw):
    return OrderFactory(
        product=product,
        state=state,
        created_at=created,
        paid_at=paid,
        refunded_at=refunded,
        quantity=quantity,
        **kw,
    )


def payment(account, o, status, *, created, succeeded=None, method="alipay"):
    return PaymentFactory(
        account=account,
        reference=o.order_no,
        method=method,
        amount_minor=o.amount_minor,
        currency=o.currency,
        status=status,
        created_at=created,
        succeeded_at=succeeded,
    )


@pytest.fixture
def shop():
    """Orders A to L (see each line), a payment for each paid one, failed/closed/pending attempts on both
    channels, refunds in three states, and products for the low-stock list."""
    merchant = MerchantFactory()
    epay = EpayAccountFactory(code="epay", name="epay CNY", currency="CNY", priority=1)
    stripe = EpayAccountFactory(code="stripe", name="Stripe USD", currency="USD", priority=2)
    cny = ProductFactory(merchant=merchant, name="Gift CNY", price_minor=990, currency="CNY", secrets_count=4)
    usd = ProductFactory(merchant=merchant, name="Gift USD", price_minor=500, currency="USD", secrets_count=0)
    manual = ProductFactory(
        merchant=merchant, name="Top-up", price_minor=1500, delivery_kind=DeliveryKind.MANUAL, secrets_count=0
    )
    ProductFactory(merchant=merchant, name="Plenty", secrets_count=8)
    ProductFactory(merchant=merchant, name="Off sale", is_active=False, secrets_count=0)
    ProductFactory(merchant=merchant, name="Download", delivery_kind=DeliveryKind.REUSABLE, reusable_secret="x")

    S, P = OrderState, PaymentStatus
    o = {}
    # Yesterday 23:50 / 23:59 shop time: in the week, not today.
    o["A"] = order(cny, S.DELIVERED, created=utc(1, 15, 50), paid=utc(1, 15, 59))
    # Today 00:20 / 00:30 shop time (still Dec 1 in UTC), two units.
    o["B"] = order(cny, S.DELIVERED, created=utc(1, 16, 20), paid=utc(1, 16, 30), quantity=2)
    o["C"] = order(usd, S.DELIVERED, created=utc(2, 1, 0), paid=utc(2, 1, 5))  # 09:00 / 09:05, USD
    # Paid 10:10 and refunded 11:00 today: in gross paid and in refunded.
    o["D"] = order(cny, S.REFUNDED, created=utc(2, 2, 0), paid=utc(2, 2, 10), refunded=utc(2, 3, 0))
    # Sunday 23:40 / 23:50 shop time: last week (the 14-day chart has it on Nov 29).
    o["E"] = order(cny, S.DELIVERED, created=utc(29, 15, 40, 11), paid=utc(29, 15, 50, 11))
    # Monday 00:05 / 00:10 shop time, though still Sunday in UTC: this week.
    o["F"] = order(cny, S.DELIVERED, created=utc(29, 16, 5, 11), paid=utc(29, 16, 10, 11))
    o["G"] = order(cny, S.PENDING, created=utc(2, 4, 0))  # 12:00, unpaid
    o["H"] = order(manual, S.PAID, created=utc(2, 3, 30), paid=utc(2, 3, 35))  # 11:30 / 11:35, manual delivery
    o["I"] = order(cny, S.UNDELIVERABLE, created=utc(2, 4, 20), paid=utc(2, 4, 30))  # 12:20 / 12:30
    o["J"] = order(cny, S.REFUNDING, created=utc(2, 4, 50), paid=utc(2, 5, 0))  # 12:50 / 13:00, refund open
    o["K"] = order(cny, S.DELIVERED, created=utc(2, 7, 0), paid=utc(2, 7, 5))  # after NOW: nowhere
    # Paid 20 days ago, refunded today 13:30: refunded today, paid in no window.
    o["L"] = order(cny, S.REFUNDED, created=utc(12, 3, 0, 11), paid=utc(12, 3, 5, 11), refunded=utc(2, 5, 30))

    pay = {}
    for key in "ABEFH":
        x = o[key]
        pay[key] = payment(epay, x, P.SUCCEEDED, created=x.paid_at - timedelta(minutes=1), succeeded=x.paid_at)
    for key, status, method in [
        ("I", P.SUCCEEDED, "alipay"),
        ("D", P.REFUNDED, "wxpay"),
        ("J", P.REFUNDING, "wxpay"),
        ("K", P.SUCCEEDED, "alipay"),
        ("L", P.REFUNDED, "alipay"),
    ]:
        x = o[key]
        pay[key] = payment(
            epay, x, status, created=x.paid_at - timedelta(minutes=1), succeeded=x.paid_at, method=method
        )
    pay["C"] = payment(stripe, o["C"], P.SUCCEEDED, created=utc(2, 1, 4), succeeded=utc(2, 1, 5), method="card")
    payment(stripe, o["C"], P.FAILED, created=utc(2, 0, 30), method="card")  # a declined card first
    payment(epay, o["G"], P.PENDING, created=utc(2, 4, 1))  # the buyer is on the pay page
    payment(epay, o["G"], P.FAILED, created=utc(2, 3, 0))  # today
    payment(epay, o["E"], P.FAILED, created=utc(28, 10, 0, 11))  # 4 days ago: 7 days only
    payment(epay, o["A"], P.CLOSED, created=utc(1, 10, 0))  # an abandoned first try, within 24 h

    RefundFactory(payment=pay["D"], status=RefundStatus.SUCCEEDED)
    RefundFactory(payment=pay["L"], status=RefundStatus.SUCCEEDED)
    open_refund = RefundFactory(payment=pay["J"], status=RefundStatus.PENDING)
    # An earlier refund of J the channel refused: final, not open.
    Refund.objects.create(
        refund_no="R-refused", payment=pay["J"], amount_minor=990, currency="CNY", status=RefundStatus.FAILED
    )

    # CNY stock: 4 secrets, one held by a live reservation, one whose reservation lapsed (free again): 3 free.
    held, lapsed = CardSecret.objects.filter(product=cny).order_by("pk")[:2]
    CardSecret.objects.filter(pk=held.pk).update(
        status=SecretStatus.RESERVED, order=o["G"], reserved_until=NOW + timedelta(minutes=10)
    )
    CardSecret.objects.filter(pk=lapsed.pk).update(
        status=SecretStatus.RESERVED, order=o["G"], reserved_until=NOW - timedelta(minutes=10)
    )
    breaker.breaker_store().force_open(stripe.pk)
    return {
        "merchant": merchant,
        "orders": o,
        "cny": cny,
        "usd": usd,
        "epay": epay,
        "stripe": stripe,
        "open_refund": open_refund,
    }


def line(window, currency):
    (found,) = [x for x in window.lines if x.currency == currency]
    return (found.created_orders, found.paid_orders, found.paid, found.refunded_orders, found.refunded)


def test_today_and_this_week_in_shop_time_per_currency(shop):
    d = dashboard_figures(now=NOW)

    assert [x.currency for x in d.today.lines] == ["CNY", "USD"]
    # Today (since 2026-12-01 16:00 UTC): created B D G H I J; paid B(2 units) D H I J; refunded D and L.
    assert line(d.today, "CNY") == (6, 5, Money(1980 + 990 + 1500 + 990 + 990, "CNY"), 2, Money(1980, "CNY"))
    assert line(d.today, "USD") == (1, 1, Money(500, "USD"), 0, Money(0, "USD"))
    assert d.today.lines[0].net == Money(6450 - 1980, "CNY")
    assert d.today.lines[0].paid_label == "64.50 CNY"
    assert (d.today.created_orders, d.today.paid_orders, d.today.refunded_orders) == (7, 6, 2)
    assert d.today.since == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    # The week (since Monday 00:00 shop time = Sunday 16:00 UTC): adds A and F, not E.
    assert line(d.week, "CNY") == (8, 7, Money(990 + 1980 + 990 + 990 + 1500 + 990 + 990, "CNY"), 2, Money(1980, "CNY"))
    assert line(d.week, "USD") == (1, 1, Money(500, "USD"), 0, Money(0, "USD"))
    assert d.week.since == datetime(2026, 11, 29, 16, 0, tzinfo=UTC)
    assert d.week.since.astimezone(UTC).weekday() == 6 and d.week.since.weekday() == 0  # Sunday in UTC, Monday here


def test_charts_bucket_by_shop_time_hour_and_day(shop):
    d = dashboard_figures(now=NOW)

    h = d.hourly
    assert h.labels == tuple(f"{i:02d}:00" for i in range(24))
    created = [0] * 24
    for hour, n in {0: 1, 9: 1, 10: 1, 11: 1, 12: 3}.items():  # B 00:20; C; D; H; G I J
        created[hour] = n
    paid = [0] * 24
    for hour in (0, 9, 10, 11, 12, 13):  # B 00:30, C 09:05, D 10:10, H 11:35, I 12:30, J 13:00
        paid[hour] = 1
    assert list(h.created_orders) == created
    assert list(h.paid_orders) == paid
    assert [r.currency for r in h.revenue] == ["CNY", "USD"]
    cny = [0] * 24
    cny[0], cny[10], cny[11], cny[12], cny[13] = 1980, 990, 1500, 990, 990
    usd = [0] * 24
    usd[9] = 500
    assert list(h.revenue[0].minor) == cny and list(h.revenue[1].minor) == usd
    assert h.revenue[0].values[0] == "19.80" and h.revenue[0].values[1] == "0.00"

    day = d.daily
    assert day.labels[0] == "2026-11-19" and day.labels[-1] == "2026-12-02" and len(day.labels) == 14
    by_day = dict(zip(day.labels, zip(day.created_orders, day.paid_orders, strict=True), strict=True))
    assert {k: v for k, v in by_day.items() if v != (0, 0)} == {
        "2026-11-29": (1, 1),  # E at 23:40 / 23:50 shop time
        "2026-11-30": (1, 1),  # F at 00:05 / 00:10 shop time (Nov 29 in UTC)
        "2026-12-01": (1, 1),  # A
        "2026-12-02": (7, 6),  # B C D G H I J created; B C D H I J paid
    }
    (cny_days, usd_days) = day.revenue
    assert dict(zip(day.labels, cny_days.values, strict=True))["2026-12-02"] == "64.50"
    assert {k: v for k, v in zip(day.labels, cny_days.minor, strict=True) if v} == {
        "2026-11-29": 990,
        "2026-11-30": 990,
        "2026-12-01": 990,
        "2026-12-02": 6450,
    }
    assert {k: v for k, v in zip(day.labels, usd_days.minor, strict=True) if v} == {"2026-12-02": 500}

    data = json.loads(json.dumps(d.chart_data()))  # plain data all the way down
    assert data["hourly"]["labels"][0] == "00:00"
    assert data["hourly"]["orders"][0]["data"] == created
    assert data["daily"]["revenue"][1] == {
        "label": "Revenue (USD)",
        "currency": "USD",
        "data": list(usd_days.values),
    }


def test_method_mix_and_channel_success(shop):
    d = dashboard_figures(now=NOW)

    # The last 7 days of collected money: K is after NOW, L 20 days old.
    assert [(m.method, str(m.label), m.payments, m.amounts) for m in d.methods] == [
        ("alipay", "Alipay", 6, (Money(990 + 1980 + 990 + 990 + 1500 + 990, "CNY"),)),
        ("wxpay", "WeChat Pay", 2, (Money(1980, "CNY"),)),
        ("card", "Card", 1, (Money(500, "USD"),)),
    ]
    epay, stripe = d.channels
    assert (epay.account_name, epay.breaker_state, str(epay.breaker_label)) == (
        "epay CNY",
        "closed",
        "in use (automatic)",
    )
    assert (stripe.account_name, stripe.breaker_state, str(stripe.breaker_label)) == (
        "Stripe USD",
        "forced_open",
        "not used (set by an operator)",
    )
    w = epay.last_24h  # A B D H I J paid; G's failure and pending; A's closed try
    assert (w.attempts, w.succeeded, w.failed, w.closed, w.open, w.success_rate) == (9, 6, 1, 1, 1, 75.0)
    w = epay.last_7d  # and E F, E's failure
    assert (w.attempts, w.succeeded, w.failed, w.closed, w.open, w.success_rate) == (12, 8, 2, 1, 1, 72.7)
    assert w.success_rate_label == "72.7 %"
    for w in (stripe.last_24h, stripe.last_7d):
        assert (w.attempts, w.succeeded, w.failed, w.closed, w.open, w.success_rate) == (2, 1, 1, 0, 0, 50.0)
    charts = d.chart_data()
    assert charts["methods"]["payments"] == [6, 2, 1]
    assert charts["methods"]["amounts"] == [
        {"currency": "CNY", "data": ["74.40", "19.80", "0.00"]},
        {"currency": "USD", "data": ["0.00", "0.00", "5.00"]},
    ]
    assert charts["channels"]["success_rate_24h"] == [75.0, 50.0]


def test_lists_that_need_an_operator(shop):
    o = shop["orders"]
    d = dashboard_figures(now=NOW)

    assert d.low_stock_threshold == 5
    assert [(p.name, p.free_stock, p.price_label) for p in d.low_stock.rows] == [
        ("Gift USD", 0, "5.00 USD"),
        ("Gift CNY", 3, "9.90 CNY"),
    ]
    assert (d.low_stock.total, d.low_stock.rows[1].pk) == (2, shop["cny"].pk)
    assert [(r.pk, r.order_no, r.product_name, r.amount_label) for r in d.manual_delivery.rows] == [
        (o["H"].pk, o["H"].order_no, "Top-up", "15.00 CNY")
    ]
    assert d.manual_delivery.total == 1
    assert [(r.pk, r.order_no, r.product_name, r.amount_label, r.state) for r in d.undeliverable.rows] == [
        (o["I"].pk, o["I"].order_no, "Gift CNY", "9.90 CNY", "undeliverable")
    ]
    assert d.undeliverable.total == 1
    assert d.refunding_orders == 1
    (refund,) = d.open_refunds.rows
    assert d.open_refunds.total == 1
    assert (refund.refund_no, refund.status, str(refund.status_label)) == (
        shop["open_refund"].refund_no,
        "pending",
        "refund pending at the provider",
    )
    assert (refund.order_pk, refund.order_no, refund.product_name, refund.order_state, refund.amount_label) == (
        o["J"].pk,
        o["J"].order_no,
        "Gift CNY",
        "refunding",
        "9.90 CNY",
    )


def test_lists_are_capped_with_the_total(settings):
    settings.CARDSHOP_LOW_STOCK_THRESHOLD = 1
    product = ProductFactory(secrets_count=0)
    made = [
        OrderFactory(product=product, state=OrderState.UNDELIVERABLE, paid_at=NOW - timedelta(minutes=i))
        for i in range(LIST_LIMIT + 2)
    ]
    d = dashboard_figures(now=NOW)
    assert d.undeliverable.total == LIST_LIMIT + 2
    assert [r.pk for r in d.undeliverable.rows] == [x.pk for x in reversed(made)][:LIST_LIMIT]  # longest wait first
    assert d.undeliverable.more == 2
    assert (d.low_stock_threshold, [r.pk for r in d.low_stock.rows]) == (1, [product.pk])


def test_a_merchant_sees_only_its_orders_and_products(shop):
    other = ProductFactory(name="Other's", secrets_count=0)
    OrderFactory(product=other, state=OrderState.UNDELIVERABLE, created_at=utc(2, 5, 0), paid_at=utc(2, 5, 1))
    everyone = dashboard_figures(now=NOW)
    mine = dashboard_figures(now=NOW, merchant=shop["merchant"])
    assert everyone.undeliverable.total == 2 and mine.undeliverable.total == 1
    assert line(everyone.today, "CNY")[:2] == (7, 6) and line(mine.today, "CNY")[:2] == (6, 5)
    assert [p.name for p in mine.low_stock.rows] == ["Gift USD", "Gift CNY"]
    assert "Other's" in [p.name for p in everyone.low_stock.rows]
    assert mine.merchant_id == shop["merchant"].pk


def test_an_empty_shop_has_zero_buckets_and_empty_lists():
    with pytest.raises(ValueError):
        dashboard_figures(now=NOW.replace(tzinfo=None))  # whose midnight would that be?
    d = dashboard_figures(now=NOW)
    assert d.today.lines == () and d.week.lines == ()
    assert d.hourly.created_orders == (0,) * 24 and d.hourly.revenue == ()
    assert d.daily.paid_orders == (0,) * 14
    assert (d.methods, d.channels) == ((), ())
    assert (d.low_stock.total, d.manual_delivery.total, d.undeliverable.total, d.open_refunds.total) == (0, 0, 0, 0)
    assert d.review_waiting.total == 0


def test_the_figures_take_a_fixed_number_of_queries(shop, django_assert_num_queries):
    dashboard_figures(now=NOW)  # warms the routing knobs' per-process cache
    with django_assert_num_queries(15):
        dashboard_figures(now=NOW)
    OrderFactory(product=shop["cny"], state=OrderState.UNDELIVERABLE, created_at=utc(2, 5, 0), paid_at=utc(2, 5, 1))
    OrderFactory(product=shop["cny"], state=OrderState.REVIEW, created_at=utc(2, 5, 10))
    with django_assert_num_queries(15):
        dashboard_figures(now=NOW)


# ---- the demo shop --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_accounts(tmp_path_factory):
    """Each simulator's account file, as `make run` has them written (as in test_admin_pages)."""
    from payments.simulators.catalog import SIMULATORS, simulator_class

    folder = tmp_path_factory.mktemp("sim")
    for code in SIMULATORS:
        sim = simulator_class(code)().start()
        try:
            acct = sim.account(webhook_url=f"http://127.0.0.1:8000/notify/{code}/")
            (folder / f"{code}.json").write_text(json.dumps(acct.__dict__))
        finally:
            sim.stop()
    return folder


def _demo_history(now: datetime, rng) -> None:
    """Orders on the seeded demo's products over the last 16 days, each with the payments a real one leaves:
    every state the dashboard counts, on every demo channel, through every method the channel takes."""
    methods = {"alipay": "alipay", "wechatpay": "wxpay", "stripe": "card", "epay": "alipay", "bankgw": "bank"}
    accounts = list(ChannelAccount.objects.order_by("pk"))
    products = list(Product.objects.filter(is_active=True).order_by("pk"))
    S, P = OrderState, PaymentStatus
    for _ in range(120):
        product = rng.choice(products)
        account = rng.choice(accounts)
        created = now - timedelta(minutes=rng.randrange(16 * 24 * 60))
        paid = created + timedelta(minutes=rng.randrange(1, 15))
        if paid > now:
            paid = None
        if paid is None:
            state = S.PENDING
        elif product.delivery_kind == DeliveryKind.MANUAL:
            state = rng.choice([S.PAID, S.DELIVERED])
        else:
            state = rng.choice([S.DELIVERED] * 6 + [S.UNDELIVERABLE, S.REFUNDING, S.REFUNDED])
        refunded = paid + timedelta(minutes=30) if state == S.REFUNDED and paid + timedelta(minutes=30) <= now else None
        if state == S.REFUNDED and refunded is None:
            state = S.REFUNDING
        x = order(product, state, created=created, paid=paid, refunded=refunded, quantity=rng.randint(1, 3))
        method = methods[account.code]
        if rng.random() < 0.3:  # a try that failed first
            payment(account, x, P.FAILED, created=created, method=method)
        status = {S.REFUNDING: P.REFUNDING, S.REFUNDED: P.REFUNDED}.get(state, P.SUCCEEDED if paid else P.PENDING)
        p = payment(account, x, status, created=created + timedelta(seconds=30), succeeded=paid, method=method)
        if state in (S.REFUNDING, S.REFUNDED):
            RefundFactory(payment=p, status=RefundStatus.SUCCEEDED if state == S.REFUNDED else RefundStatus.PENDING)


def test_the_seeded_demo_figures_agree_with_the_orders(sim_accounts):

    from django.utils import timezone

    # At 14:00 shop time: just after the shop's midnight, today has no paid order yet and the check below that
    # the figures are not all zero would fail for the first minutes of every day (the clock keeps ticking).
    with time_machine.travel(timezone.localtime().replace(hour=14, minute=0, second=0), tick=True):
        _seeded_demo_figures_agree_with_the_orders(sim_accounts)


def _seeded_demo_figures_agree_with_the_orders(sim_accounts):
    import random

    from django.utils import timezone

    call_command("seed_demo", sim_accounts=str(sim_accounts), stdout=io.StringIO())
    now = timezone.now()
    _demo_history(now, random.Random(10))
    d = dashboard_figures(now=now)
    tz = d.now.tzinfo
    local = now.astimezone(tz)
    today = local.replace(hour=0, minute=0, second=0, microsecond=0)
    orders = list(Order.objects.all())

    def within(t, since):
        return t is not None and since <= t <= now

    for window, since in ((d.today, today), (d.week, today - timedelta(days=local.weekday()))):
        expected = {}
        for o in orders:
            c = expected.setdefault(o.currency, [0, 0, 0, 0, 0])
            c[0] += within(o.created_at, since)
            if within(o.paid_at, since):
                c[1], c[2] = c[1] + 1, c[2] + o.amount_minor
            if within(o.refunded_at, since):
                c[3], c[4] = c[3] + 1, c[4] + o.amount_minor
        expected = {k: v for k, v in expected.items() if any(v)}
        got = {
            x.currency: [x.created_orders, x.paid_orders, x.paid_minor, x.refunded_orders, x.refunded_minor]
            for x in window.lines
        }
        assert got == expected and window.since == since

    # Buckets worked out in Python from each order's shop-time hour and date.
    hourly_created, hourly_paid = [0] * 24, [0] * 24
    days = [(today - timedelta(days=13 - i)).date() for i in range(14)]
    daily_created, daily_paid, daily_minor = [0] * 14, [0] * 14, {}
    for o in orders:
        if within(o.created_at, today):
            hourly_created[o.created_at.astimezone(tz).hour] += 1
        if within(o.paid_at, today):
            hourly_paid[o.paid_at.astimezone(tz).hour] += 1
        if within(o.created_at, today - timedelta(days=13)):
            daily_created[days.index(o.created_at.astimezone(tz).date())] += 1
        if within(o.paid_at, today - timedelta(days=13)):
            i = days.index(o.paid_at.astimezone(tz).date())
            daily_paid[i] += 1
            daily_minor.setdefault(o.currency, [0] * 14)[i] += o.amount_minor
    assert (list(d.hourly.created_orders), list(d.hourly.paid_orders)) == (hourly_created, hourly_paid)
    assert (list(d.daily.created_orders), list(d.daily.paid_orders)) == (daily_created, daily_paid)
    assert {r.currency: list(r.minor) for r in d.daily.revenue} == daily_minor
    assert d.daily.labels == tuple(x.isoformat() for x in days)
    assert sum(daily_paid) > sum(hourly_paid) > 0

    week_ago = now - timedelta(days=7)
    mix = (
        Payment.objects.filter(status__in=PAID_STATES, succeeded_at__gte=week_ago, succeeded_at__lte=now)
        .values("method", "currency")
        .annotate(n=Count("pk"), minor=Sum("amount_minor"))
    )
    expected_mix = {}
    for r in mix:
        n, amounts = expected_mix.get(r["method"], (0, ()))
        expected_mix[r["method"]] = (n + r["n"], tuple(sorted((*amounts, Money(r["minor"], r["currency"])), key=str)))
    assert {m.method: (m.payments, tuple(sorted(m.amounts, key=str))) for m in d.methods} == expected_mix
    assert len(d.methods) >= 3

    assert [c.account_id for c in d.channels] == list(
        ChannelAccount.objects.order_by("priority", "pk").values_list("pk", flat=True)
    )
    for row in d.channels:
        for w, since in ((row.last_24h, now - timedelta(hours=24)), (row.last_7d, week_ago)):
            made = Payment.objects.filter(account_id=row.account_id, created_at__gte=since, created_at__lte=now)
            assert w.attempts == made.count()
            assert w.succeeded == made.filter(status__in=PAID_STATES).count()
            assert w.failed == made.filter(status=PaymentStatus.FAILED).count()
            assert w.open == made.filter(status=PaymentStatus.PENDING).count()

    free = Q(secrets__status=SecretStatus.AVAILABLE) | Q(
        secrets__status=SecretStatus.RESERVED, secrets__reserved_until__lt=now
    )
    low = (
        Product.objects.filter(is_active=True, delivery_kind=DeliveryKind.UNIQUE)
        .annotate(free=Count("secrets", filter=free))
        .filter(free__lt=5)
    )
    assert {(p.pk, p.free_stock) for p in d.low_stock.rows} == {(p.pk, p.free) for p in low}
    assert d.low_stock.total == low.count() >= 1  # the demo's VPN codes: 3 left

    manual = Order.objects.filter(state=OrderState.PAID, product__delivery_kind=DeliveryKind.MANUAL)
    assert d.manual_delivery.total == manual.count() > 0
    assert [r.pk for r in d.manual_delivery.rows] == list(
        manual.order_by("paid_at", "pk").values_list("pk", flat=True)[:10]
    )
    undeliverable = Order.objects.filter(state=OrderState.UNDELIVERABLE)
    assert d.undeliverable.total == undeliverable.count() > 0
    assert {r.pk for r in d.undeliverable.rows} <= set(undeliverable.values_list("pk", flat=True))
    assert d.refunding_orders == Order.objects.filter(state=OrderState.REFUNDING).count() > 0
    live = Refund.objects.filter(status__in=[RefundStatus.REQUESTED, RefundStatus.PENDING, RefundStatus.UNKNOWN])
    assert d.open_refunds.total == live.count() > 0
    assert {r.order_pk for r in d.open_refunds.rows} <= set(
        Order.objects.filter(state=OrderState.REFUNDING).values_list("pk", flat=True)
    )


def test_a_template_renders_the_figures_in_either_language(shop):
    from django.template import Context, Template
    from django.utils import translation

    page = Template(
        "{% for line in d.today.lines %}{{ line.currency }}={{ line.paid_label }};{% endfor %}"
        "{% for row in d.undeliverable.rows %}{{ row.order_no }}/{{ row.amount_label }}{% endfor %}"
        "{{ d.chart_data|json_script:'dashboard-charts' }}"
    )
    d = dashboard_figures(now=NOW)
    for lang in ("en", "zh-hans"):
        with translation.override(lang):
            html = page.render(Context({"d": d}))
            assert "CNY=64.50 CNY;USD=5.00 USD;" in html
            assert f"{shop['orders']['I'].order_no}/9.90 CNY" in html
            assert '<script id="dashboard-charts" type="application/json">' in html
            charts = json.loads(html.split('type="application/json">')[1].split("</script>")[0])
            assert charts["hourly"]["labels"][13] == "13:00" and charts["methods"]["payments"] == [6, 2, 1]
