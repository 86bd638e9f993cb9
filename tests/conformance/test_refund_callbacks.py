"""A refund the channel only accepts (PROCESSING) is finished by the channel's refund callback, or, if that
callback is lost, by the janitor's query; an ABNORMAL outcome puts the order back for the operator."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from cardshop.models import Order, OrderState
from cardshop.services.checkout import order_payment_start
from cardshop.services.refunds import order_refund_request
from cardshop.tasks import refunds_sync_due_task
from payments.models import ChannelAccount, Payment, PaymentStatus, Refund, RefundStatus
from payments.simulators.wechatpay import WechatPaySimulator
from tests.cardshop.helpers import buy
from tests.conformance.test_channels import _wait
from tests.conftest import make_product

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def wx(live_server, settings, merchant):
    sim = WechatPaySimulator(refund_delay=None).start()  # refunds stay PROCESSING until completed
    settings.CARDSHOP_PUBLIC_URL = live_server.url
    acct = sim.account()
    ChannelAccount.objects.create(
        code="wechatpay",
        name="WeChat Pay",
        merchant_no=acct.merchant_no,
        base_url=acct.base_url,
        currency=acct.currency,
        credentials=json.dumps(acct.credentials),
    )
    yield sim, make_product(merchant, secrets_count=2)
    sim.stop()


def _delivered_then_refund_requested(sim, product):
    order = buy(product)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", channel_code="wechatpay")
    sim.pay(payment.out_trade_no)
    assert _wait(lambda: Order.objects.get(pk=order.pk).state == OrderState.DELIVERED)
    view = order_refund_request(order_no=order.order_no, actor="op")
    assert _wait(lambda: Refund.objects.get().status == RefundStatus.PENDING)  # the channel said PROCESSING
    assert Order.objects.get(pk=order.pk).state == OrderState.REFUNDING
    return order, view


def test_refund_callback_completes_a_processing_refund(wx):
    sim, product = wx
    order, view = _delivered_then_refund_requested(sim, product)
    sim.complete_refund(view.refund_no, background=False)  # the channel settles it and calls back
    assert _wait(lambda: Order.objects.get(pk=order.pk).state == OrderState.REFUNDED)
    assert Refund.objects.get().status == RefundStatus.SUCCEEDED
    assert Payment.objects.get().status == PaymentStatus.REFUNDED
    assert Order.objects.get(pk=order.pk).events.get(kind="refunded").detail["source"] == "notify"


def test_lost_refund_callback_is_made_up_by_the_janitor(wx):
    sim, product = wx
    order, view = _delivered_then_refund_requested(sim, product)
    sim.faults.drop_notify = 1
    sim.complete_refund(view.refund_no, background=False)
    with time_machine.travel(timezone.now() + timedelta(seconds=16), tick=False):
        refunds_sync_due_task.delay().get()
    assert Order.objects.get(pk=order.pk).state == OrderState.REFUNDED
    assert Order.objects.get(pk=order.pk).events.get(kind="refunded").detail["source"] == "janitor"


def test_abnormal_refund_returns_the_order_to_the_operator(wx):
    sim, product = wx
    order, view = _delivered_then_refund_requested(sim, product)
    sim.complete_refund(view.refund_no, status="ABNORMAL", background=False)
    assert _wait(lambda: Order.objects.get(pk=order.pk).state == OrderState.DELIVERED)
    assert Refund.objects.get().status == RefundStatus.FAILED
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED  # the money is still ours to refund
    assert Order.objects.get(pk=order.pk).events.filter(kind="refund_failed").exists()
