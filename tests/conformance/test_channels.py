"""One conformance suite for every channel, against its simulator over real HTTP (live server + loopback).

Each case names a promise the issue makes for all channels: a paid trade is delivered once, replays and
duplicates are harmless, a callback that beats the create response wins, a late "closed" never undoes a
payment, forged callbacks get a 4xx and change no row, a create in doubt is UNKNOWN until the janitor's
query settles it, and a refund goes through the channel exactly once.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
import requests
import time_machine
from django.core import mail
from django.utils import timezone

from cardshop.models import CardSecret, Order, OrderEvent, OrderState
from cardshop.services.checkout import order_payment_start
from cardshop.services.refunds import order_refund_request
from cardshop.tasks import payments_sync_due_task
from core.errors import DomainError
from payments.channels import registry
from payments.channels.base import Capability
from payments.contracts import PaymentUnavailable
from payments.models import ChannelAccount, Payment, PaymentStatus, ProviderNotification, Refund, RefundStatus
from payments.simulators import base as sim_base
from payments.simulators.catalog import SIMULATORS, simulator_class
from tests.cardshop.helpers import buy
from tests.conftest import make_product

pytestmark = pytest.mark.django_db(transaction=True)


FORGED = [
    (code, variant)
    for code in SIMULATORS
    for variant in sorted(simulator_class(code).notify_variants - {sim_base.VALID, sim_base.CLOSED})
]
WITH_CLOSED = [code for code in SIMULATORS if sim_base.CLOSED in simulator_class(code).notify_variants]

_running: dict[str, object] = {}


@pytest.fixture(scope="session")
def simulators():
    yield _running
    for sim in _running.values():
        sim.stop()


@pytest.fixture
def shop(request, simulators, live_server, settings, merchant):
    """The channel under test: simulator running, one channel account pointing at it, a product in its currency."""
    code = request.param
    sim = simulators.get(code)
    if sim is None:
        sim = simulators[code] = simulator_class(code)().start()
    sim.faults.reset()
    settings.CARDSHOP_PUBLIC_URL = live_server.url
    acct = sim.account(webhook_url=f"{live_server.url}/notify/{code}/")
    ChannelAccount.objects.create(
        code=code,
        name=f"{code} (simulator)",
        merchant_no=acct.merchant_no,
        base_url=acct.base_url,
        currency=acct.currency,
        credentials=json.dumps(acct.credentials),
    )
    product = make_product(merchant, secrets_count=3, currency=acct.currency)
    yield Shop(code, sim, product, live_server.url)
    sim.faults.reset()


class Shop:
    def __init__(self, code, sim, product, url):
        self.code, self.sim, self.product, self.url = code, sim, product, url

    def start(self):
        order = buy(self.product)
        return order, order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", channel_code=self.code)

    def post(self, notify: sim_base.NotifyRequest) -> requests.Response:
        headers = dict(notify.headers)
        if notify.body:
            headers.setdefault("Content-Type", notify.content_type)
        return requests.request(
            notify.method,
            f"{self.url}/notify/{self.code}/",
            params=notify.query or None,
            data=notify.body or None,
            headers=headers,
            timeout=10,
        )


def _wait(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _delivered(order) -> bool:
    return Order.objects.get(pk=order.pk).state == OrderState.DELIVERED


def snapshot():
    return (
        list(Order.objects.order_by("pk").values_list("pk", "state", "paid_at")),
        list(Payment.objects.order_by("pk").values_list("pk", "status", "provider_trade_no")),
        list(CardSecret.objects.order_by("pk").values_list("pk", "status", "order_id")),
        ProviderNotification.objects.count(),
        OrderEvent.objects.count(),
        len(mail.outbox),
    )


channels = pytest.mark.parametrize("shop", list(SIMULATORS), indirect=True)


@channels
def test_paid_trade_is_delivered_once(shop):
    order, payment = shop.start()
    assert payment.status == PaymentStatus.PENDING
    assert payment.qr_content or payment.pay_url or payment.client_secret
    shop.sim.pay(payment.out_trade_no)
    assert _wait(lambda: _delivered(order))
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert CardSecret.objects.filter(order=order).count() == 1
    assert _wait(lambda: len(mail.outbox) == 1)
    # The provider sends the same callback again (its retry): acknowledged, nothing twice.
    before = snapshot()
    again = shop.post(shop.sim.notify_request(payment.out_trade_no))
    assert again.status_code < 300
    assert snapshot() == before


@channels
def test_duplicate_callbacks_deliver_once(shop):
    shop.sim.faults.duplicate_notify = 1
    order, payment = shop.start()
    shop.sim.pay(payment.out_trade_no)
    assert _wait(lambda: _delivered(order))
    time.sleep(0.3)  # let the second copy land
    assert CardSecret.objects.filter(order=order).count() == 1
    assert ProviderNotification.objects.count() == 1
    assert len(mail.outbox) == 1


@channels
def test_callback_before_the_create_response_wins(shop, settings):
    """The provider records the trade, the buyer pays and the callback lands while our create call waits."""
    settings.PAYMENTS_PROVIDER_TIMEOUTS = (2.0, 5.0)
    shop.sim.faults.timeout, shop.sim.faults.hang_seconds = 1, 1.5  # answers late, but within our timeout
    paid = threading.Event()

    def buyer():
        if _wait(lambda: Payment.objects.exists()):
            out_trade_no = Payment.objects.get().out_trade_no
            if _wait(lambda: shop.sim.trade_for(out_trade_no) is not None):
                shop.sim.pay(out_trade_no)
                paid.set()

    t = threading.Thread(target=buyer)
    t.start()
    order, view = shop.start()
    t.join()
    assert paid.is_set()
    assert view.status == PaymentStatus.SUCCEEDED  # the late create answer did not put it back to pending
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert _delivered(order)


@pytest.mark.parametrize("shop", WITH_CLOSED, indirect=True)
def test_closed_after_success_changes_nothing(shop):
    order, payment = shop.start()
    shop.sim.pay(payment.out_trade_no)
    assert _wait(lambda: _delivered(order))
    before = snapshot()[:3]
    resp = shop.post(shop.sim.notify_request(payment.out_trade_no, variant=sim_base.CLOSED))
    assert resp.status_code < 300  # a true statement, acknowledged, but a success is never undone
    assert snapshot()[:3] == before


@pytest.mark.parametrize("shop, variant", FORGED, indirect=["shop"])
def test_forged_callback_is_refused_and_changes_nothing(shop, variant):
    order, payment = shop.start()
    shop.sim.faults.drop_notify = 1
    shop.sim.pay(payment.out_trade_no)  # the trade is really paid; only the forged callback arrives
    forged = shop.sim.notify_request(payment.out_trade_no, variant=variant)
    before = snapshot()
    resp = shop.post(forged)
    assert 400 <= resp.status_code < 500, (variant, resp.status_code, resp.text[:200])
    assert snapshot() == before


@channels
def test_create_in_doubt_is_closed_at_the_provider_before_another_trade(shop, settings):
    """Issue 9 point 3: a new trade only after the old one is closed at the provider (or, where the channel
    cannot close, the old one's cashier never reached anybody)."""
    settings.PAYMENTS_PROVIDER_TIMEOUTS = (1.0, 0.5)
    shop.sim.faults.timeout, shop.sim.faults.hang_seconds = 1, 1.5
    order = buy(shop.product)
    with pytest.raises(PaymentUnavailable):
        order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", channel_code=shop.code)
    first = Payment.objects.get()
    closable = Capability.CLOSE in registry.get(shop.code).capabilities
    assert first.status == (PaymentStatus.CLOSED if closable else PaymentStatus.UNKNOWN)
    assert _wait(lambda: shop.sim.trade_for(first.out_trade_no) is not None)
    # The buyer reloads the pay page: a new trade, paid once.
    view = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", channel_code=shop.code)
    assert view.out_trade_no != first.out_trade_no and view.status == PaymentStatus.PENDING
    shop.sim.pay(view.out_trade_no)
    assert _wait(lambda: _delivered(order))
    assert Payment.objects.filter(status=PaymentStatus.SUCCEEDED).count() == 1


@channels
def test_the_janitor_closes_a_create_in_doubt_that_the_provider_holds_unpaid(shop):
    order, payment = shop.start()
    # As if the create's answer had been lost: the provider holds the trade, nobody holds its QR.
    Payment.objects.filter(out_trade_no=payment.out_trade_no).update(status=PaymentStatus.UNKNOWN)
    with time_machine.travel(timezone.now() + timedelta(seconds=16), tick=False):
        payments_sync_due_task.delay().get()
    closable = Capability.CLOSE in registry.get(shop.code).capabilities
    assert Payment.objects.get().status == (PaymentStatus.CLOSED if closable else PaymentStatus.UNKNOWN)
    view = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", channel_code=shop.code)
    assert (view.out_trade_no != payment.out_trade_no) is True  # a new trade once the old one cannot be paid


@channels
def test_refund_goes_through_once(shop):
    order, payment = shop.start()
    shop.sim.pay(payment.out_trade_no)
    assert _wait(lambda: _delivered(order))
    order_refund_request(order_no=order.order_no, actor="op")  # on commit, the submit task runs (eager here)
    assert _wait(lambda: Order.objects.get(pk=order.pk).state == OrderState.REFUNDED)
    with pytest.raises(DomainError):  # a second click
        order_refund_request(order_no=order.order_no, actor="op")
    assert Refund.objects.count() == 1
    time.sleep(0.5)  # channels that also notify the refund do so a moment later: let it land (a no-op) first
    assert Refund.objects.get().status == RefundStatus.SUCCEEDED
    assert Payment.objects.get().status == PaymentStatus.REFUNDED
    assert shop.sim.trade_for(payment.out_trade_no)["status"] in ("refunded", 2)


@channels
def test_a_payment_is_refunded_in_two_parts_where_the_channel_takes_parts(shop):
    """Alipay, WeChat Pay, Stripe and the bank: 3.00, then the rest, each through the real adapter; the provider
    holds both and the payment ends refunded. epay (whole refunds only) refuses the part and sends nothing."""
    order, payment = shop.start()
    shop.sim.pay(payment.out_trade_no)
    assert _wait(lambda: _delivered(order))
    if Capability.PARTIAL_REFUND not in registry.get(shop.code).capabilities:
        with pytest.raises(DomainError) as refused:
            order_refund_request(order_no=order.order_no, actor="op", amount_minor=300)
        assert refused.value.code == "no_partial_refund" and not Refund.objects.exists()
        return
    order_refund_request(order_no=order.order_no, actor="op", amount_minor=300)
    assert _wait(lambda: Payment.objects.get().refunded_minor == 300)
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED
    order_refund_request(order_no=order.order_no, actor="op")  # the rest
    assert _wait(lambda: Order.objects.get(pk=order.pk).state == OrderState.REFUNDED)
    time.sleep(0.5)  # a refund callback may land a moment later (a no-op)
    assert sorted(Refund.objects.values_list("amount_minor", "status")) == [
        (300, RefundStatus.SUCCEEDED),
        (payment.amount.amount_minor - 300, RefundStatus.SUCCEEDED),
    ]
    assert Payment.objects.get().status == PaymentStatus.REFUNDED
    assert shop.sim.trade_for(payment.out_trade_no)["status"] in ("refunded", 2)
