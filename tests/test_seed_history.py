"""`seed_demo` gives the demo a past: orders placed, paid at the running simulators' cashiers, delivered, cancelled,
expired and refunded through the real services, then spread over the last two weeks (once)."""

from __future__ import annotations

import io
import json
import socket
from collections import Counter
from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from cardshop.dashboard import dashboard_figures
from cardshop.management.commands import _seed_history as history
from cardshop.models import CardSecret, DeliveryKind, Order, OrderEvent, OrderState, SecretStatus
from payments.models import Payment, PaymentStatus, Refund, RefundStatus
from payments.simulators.catalog import SIMULATORS, simulator_class

pytestmark = pytest.mark.django_db(transaction=True)

S = OrderState
HISTORY_ORDERS = 40
# seed_demo's stock of unique codes: what the storefront must still have once the history has sold its share.
DEMO_STOCK = {"steam-10": 30, "office-key": 12, "vpn-30d": 3}


def _dead_url() -> str:
    """A loopback address nobody listens on: where the shop's notify endpoint would be before its server is up."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def running_sims(tmp_path_factory):
    """The five simulators listening, each with the account file its CLI writes, as scripts/demo.sh has them
    while seed_demo runs (the web server is not up yet: the Stripe webhook points at nothing)."""
    folder = tmp_path_factory.mktemp("sim")
    dead = _dead_url()
    sims = []
    for code in SIMULATORS:
        sim = simulator_class(code)().start()
        sims.append(sim)
        acct = sim.account(webhook_url=f"{dead}/notify/{code}/")
        (folder / f"{code}.json").write_text(json.dumps(acct.__dict__))
    yield folder
    for sim in sims:
        sim.stop()


@pytest.fixture
def shop_offline(settings):
    settings.CARDSHOP_PUBLIC_URL = _dead_url()


def seed(folder, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("seed_demo", sim_accounts=str(folder), stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def test_the_demo_gets_two_weeks_of_orders_made_through_the_services(running_sims, shop_offline):
    # At 14:00 shop time (the clock ticking): in the first hours after the shop's midnight, today holds too few
    # orders for the hourly figures checked below.
    with time_machine.travel(timezone.localtime().replace(hour=14, minute=0, second=0), tick=True):
        _demo_gets_two_weeks_of_orders(running_sims)


def _demo_gets_two_weeks_of_orders(running_sims):
    out, err = seed(running_sims, history_orders=HISTORY_ORDERS)

    assert err == ""
    assert f"history: {HISTORY_ORDERS} orders" in out
    orders = list(Order.objects.select_related("product"))
    assert len(orders) == HISTORY_ORDERS
    states = Counter(o.state for o in orders)
    assert states[S.DELIVERED] > HISTORY_ORDERS // 2
    assert states[S.PAID] == 1  # the manual top-up waiting for an operator
    assert states[S.REFUNDED] == 2
    assert states[S.EXPIRED] >= 1 and states[S.CANCELLED] >= 1
    assert set(states) == {S.DELIVERED, S.PAID, S.REFUNDED, S.EXPIRED, S.CANCELLED}
    waiting = next(o for o in orders if o.state == S.PAID)
    assert waiting.product.delivery_kind == DeliveryKind.MANUAL and waiting.custom_input["account"]
    manual_done = [o for o in orders if o.state == S.DELIVERED and o.product.delivery_kind == DeliveryKind.MANUAL]
    assert len(manual_done) == 1 and manual_done[0].delivery_note.startswith("Topped up ")
    assert {o.email for o in orders} <= {f"buyer{i}@example.com" for i in range(1, 100)}

    # Every delivered order has what the buyer bought, and every paid one its succeeded payment.
    for o in orders:
        sold = CardSecret.objects.filter(order=o, status=SecretStatus.SOLD).count()
        kind = o.product.delivery_kind
        if o.state in (S.DELIVERED, S.REFUNDED) and kind == DeliveryKind.UNIQUE:
            assert sold == o.quantity, o.order_no
        else:
            assert sold == 0, o.order_no
        if o.state == S.DELIVERED and kind == DeliveryKind.REUSABLE:
            assert o.delivered_text == o.product.reusable_secret != ""
        payments = Payment.objects.filter(reference=o.order_no)
        if o.paid_at is not None:
            paid = {S.REFUNDED: PaymentStatus.REFUNDED}.get(o.state, PaymentStatus.SUCCEEDED)
            assert [(p.status, p.amount_minor, p.succeeded_at) for p in payments] == [(paid, o.amount_minor, o.paid_at)]
        else:
            assert o.state in (S.EXPIRED, S.CANCELLED)
            assert payments.count() == 1 and payments.get().status != PaymentStatus.SUCCEEDED
    assert Counter(p.method for p in Payment.objects.all()).keys() >= {"alipay", "wxpay", "card", "bank"}
    assert set(Payment.objects.values_list("channel_code", flat=True)) == set(SIMULATORS)
    refunds = Refund.objects.all()
    assert [r.status for r in refunds] == [RefundStatus.SUCCEEDED] * 2
    assert {r.payment.reference for r in refunds} == {o.order_no for o in orders if o.state == S.REFUNDED}

    # Stock accounting: the history's sales were imported first, so the storefront keeps its stock.
    for slug, stock in DEMO_STOCK.items():
        codes = CardSecret.objects.filter(product__slug=slug)
        by_status = Counter(codes.values_list("status", flat=True))
        sold = sum(o.quantity for o in orders if o.product.slug == slug and o.state in (S.DELIVERED, S.REFUNDED))
        assert by_status == Counter({SecretStatus.AVAILABLE: stock, SecretStatus.SOLD: sold}) - Counter(), slug
        assert codes.count() == stock + sold

    # Spread over the last 14 days in shop time, each order's times in their order.
    now = timezone.now()
    for o in orders:
        assert now - timedelta(days=14) < o.created_at < o.expires_at
        for later in (o.paid_at, o.delivered_at, o.refunded_at):
            assert later is None or o.created_at < later <= now
        events = list(OrderEvent.objects.filter(order=o).order_by("pk").values_list("created_at", flat=True))
        assert events == sorted(events) and events[0] == o.created_at
    assert len({o.created_at.date() for o in orders}) >= 7
    assert any(o.refunded_at and o.refunded_at > now - timedelta(days=3) for o in orders)  # in the recent figures

    figures = dashboard_figures(now=now)
    assert figures.week.paid_orders > 0
    assert "vpn-30d" in [row.slug for row in figures.low_stock.rows]
    assert sum(figures.daily.paid_orders) == sum(o.paid_at is not None for o in orders)
    if figures.now - figures.today.since >= timedelta(hours=1):  # just after midnight, today has no past yet
        assert figures.today.paid_orders >= 4
        assert sum(1 for n in figures.hourly.paid_orders if n) >= 2
    assert len(figures.methods) >= 3

    # No card code, query password or channel key is printed.
    for code in CardSecret.objects.filter(status=SecretStatus.SOLD)[:20]:
        assert code.secret not in out

    # Idempotent: a second seed adds nothing.
    again, err = seed(running_sims)
    assert "history: the shop has orders already, none added" in again and err == ""
    assert Order.objects.count() == HISTORY_ORDERS and Payment.objects.count() == len(orders)


def test_no_history_and_no_simulators_leave_the_shop_without_orders(running_sims, shop_offline, tmp_path):
    out, _err = seed(running_sims, no_history=True)
    assert "history" not in out and Order.objects.count() == 0
    # Account files whose simulators are gone (seed_demo also runs without them): skipped, nothing half made.
    for code in SIMULATORS:
        data = json.loads((running_sims / f"{code}.json").read_text())
        (tmp_path / f"{code}.json").write_text(json.dumps({**data, "base_url": _dead_url()}))
    out, err = seed(tmp_path)
    assert "history: skipped, no simulator is listening" in out and err == ""
    assert Order.objects.count() == 0


def test_the_plan_is_deterministic(running_sims, shop_offline):
    seed(running_sims, no_history=True)
    now = timezone.now()
    channels = {code: {} for code in SIMULATORS}
    first = history.plan(count=60, seed=10, channels=channels, now=now)
    assert first == history.plan(count=60, seed=10, channels=channels, now=now)
    assert first != history.plan(count=60, seed=11, channels=channels, now=now)
    assert len(first) == 60 and [p.created for p in first] == sorted(p.created for p in first)


def test_the_demo_ledger_books_every_sale_with_its_agents(running_sims, shop_offline):
    """Two merchants, the demo shop under a two-level agent chain: every paid trade of the history is booked, the
    agents earn on the demo shop's sales, and the nightly check finds nothing wrong."""
    from core.models import Agent, Merchant
    from settlement.checks import ledger_check
    from settlement.models import AccountKind, LedgerEntry

    out, err = seed(running_sims, history_orders=HISTORY_ORDERS)
    assert err == "" and "ledger: Demo Shop under" in out
    demo, studio = Merchant.objects.get(slug="demo"), Merchant.objects.get(slug="pixel-presets")
    assert demo.agent.depth == 2 and demo.agent.parent.parent is None and studio.agent is None
    commissions = LedgerEntry.objects.filter(account__kind=AccountKind.AGENT_COMMISSION_PAYABLE)
    assert set(commissions.values_list("account__party_id", flat=True)) == {demo.agent_id, demo.agent.parent_id}
    studio_sales = Order.objects.filter(merchant=studio, paid_at__isnull=False)
    assert studio_sales.exists()  # the photo pack is the studio's: a T+0 merchant with no agent
    result = ledger_check()
    assert result.problems == (), result.problems
    again, _ = seed(running_sims, history_orders=HISTORY_ORDERS)
    assert Agent.objects.count() == 2 and Merchant.objects.count() == 2


def test_the_demo_pays_the_studio_out_through_alipay(running_sims, shop_offline):
    """The T+0 studio's available money is paid out by the first payout run, once, at the Alipay simulator."""
    from core.models import Merchant
    from settlement.checks import ledger_check
    from settlement.models import Payout, PayoutDestination
    from settlement.payouts import payout_submit, payouts_create_due

    out, err = seed(running_sims, history_orders=HISTORY_ORDERS)
    assert err == "" and "payouts: Demo Shop and Pixel Presets" in out
    studio = Merchant.objects.get(slug="pixel-presets")
    assert PayoutDestination.objects.filter(party_id__in=Merchant.objects.values("pk")).count() == 2

    made = payouts_create_due()
    studio_payout = Payout.objects.get(party_id=studio.pk)  # the T+1 demo shop may have nothing released yet
    assert studio_payout.payout_no in made
    assert payout_submit(payout_no=studio_payout.payout_no) == "paid"
    assert ledger_check().problems == ()
