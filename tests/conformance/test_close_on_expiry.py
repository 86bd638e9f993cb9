"""When an order lapses, its open payment is closed at the provider, so nobody pays a QR with no stock behind
it; one the provider reports paid meanwhile is applied as a late payment; channels that cannot close are left
to lapse on their own."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from cardshop.models import Order, OrderState
from cardshop.services.checkout import order_payment_start
from cardshop.services.orders import orders_expire_due
from payments.models import ChannelAccount, Payment, PaymentStatus
from payments.simulators.alipay import AlipaySimulator
from tests.cardshop.helpers import buy
from tests.conftest import make_product

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def alipay_sim():
    sim = AlipaySimulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def alipay_order(alipay_sim, merchant, settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"  # callbacks are lost: this test applies nothing by notify
    acct = alipay_sim.account()
    ChannelAccount.objects.create(
        code="alipay",
        name="Alipay",
        merchant_no=acct.merchant_no,
        base_url=acct.base_url,
        currency=acct.currency,
        credentials=json.dumps(acct.credentials),
    )
    order = buy(make_product(merchant, secrets_count=2))
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", channel_code="alipay")
    return order, payment


def _expire(capture):
    with time_machine.travel(timezone.now() + timedelta(minutes=20), tick=False), capture(execute=True):
        assert orders_expire_due() == 1


def test_lapsed_order_closes_its_payment_at_the_provider(alipay_order, alipay_sim, django_capture_on_commit_callbacks):
    order, payment = alipay_order
    _expire(django_capture_on_commit_callbacks)
    assert Order.objects.get(pk=order.pk).state == OrderState.EXPIRED
    closed = Payment.objects.get()
    assert closed.status == PaymentStatus.CLOSED and closed.error_code == "closed_on_expiry"
    assert alipay_sim.trade_for(payment.out_trade_no)["status"] == "closed"
    with pytest.raises(ValueError):  # the buyer's late scan is refused by the provider itself
        alipay_sim.pay(payment.out_trade_no)


def test_payment_made_just_before_the_close_is_delivered_as_a_late_payment(
    alipay_order, alipay_sim, django_capture_on_commit_callbacks
):
    order, payment = alipay_order
    alipay_sim.pay(payment.out_trade_no)  # paid at the provider; its callback went nowhere
    _expire(django_capture_on_commit_callbacks)
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    assert order.events.get(kind="paid").detail["late"] is True


def test_channels_that_cannot_close_are_left_to_lapse(
    product, epay_account, epay_sim, settings, django_capture_on_commit_callbacks
):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    order = buy(product)
    order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    _expire(django_capture_on_commit_callbacks)
    assert Payment.objects.get().status == PaymentStatus.PENDING  # the janitor keeps asking, a late pay is honoured
