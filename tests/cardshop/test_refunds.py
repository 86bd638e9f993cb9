"""Refunds from the admin: full, once, confirmed by the channel's answer or by the janitor's query."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.utils import timezone

from cardshop.models import Order, OrderState
from cardshop.services.checkout import order_payment_start
from cardshop.tasks import refunds_sync_due_task
from payments.models import Payment, PaymentStatus, Refund, RefundStatus
from tests.cardshop.helpers import buy, signed_notify
from tests.operators.auth import operator_login

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    return operator_login(client, get_user_model().objects.create_superuser("op", "op@example.com", "op-pass-123456"))


@pytest.fixture
def delivered(product, epay_account, epay_sim, settings, client):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    order = buy(product)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    epay_sim.pay(payment.out_trade_no)  # paid at the provider; its notify to port 9 is lost, we deliver it here
    assert client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no)).content == b"success"
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    return order


def _provider_refunds(sim, out_trade_no: str) -> list[str]:
    return [r["out_refund_no"] for r in sim._refunds.values() if r["out_trade_no"] == out_trade_no]


def _refund_click(operator_client, order, capture):
    with capture(execute=True):
        return operator_client.post(
            "/admin/cardshop/order/",
            {"action": "refund", "_selected_action": [order.pk], "post": "yes", "reason": "buyer asked"},
            follow=True,
        )


def test_operator_refunds_a_delivered_order_once(
    operator_client, delivered, epay_sim, django_capture_on_commit_callbacks
):
    page = _refund_click(operator_client, delivered, django_capture_on_commit_callbacks).content.decode()
    assert "refund R" in page
    order = Order.objects.get(pk=delivered.pk)
    assert order.state == OrderState.REFUNDED and order.refunded_at
    refund = Refund.objects.get()
    assert refund.status == RefundStatus.SUCCEEDED and refund.amount == order.amount
    assert Payment.objects.get().status == PaymentStatus.REFUNDED
    assert epay_sim.trade_for(refund.payment.out_trade_no)["status"] == 2  # refunded at the provider
    assert _provider_refunds(epay_sim, refund.payment.out_trade_no) == [refund.refund_no]

    # A second click (or a double-submitted form) neither writes nor sends a second refund.
    page = _refund_click(operator_client, delivered, django_capture_on_commit_callbacks).content.decode()
    assert "cannot be refunded" in page
    assert Refund.objects.count() == 1
    assert _provider_refunds(epay_sim, refund.payment.out_trade_no) == [refund.refund_no]
    assert list(order.events.filter(kind__startswith="refund").values_list("kind", flat=True)) == [
        "refund_requested",
        "refunded",
    ]


def test_channel_refusal_returns_the_order_and_a_new_refund_can_follow(
    operator_client, delivered, epay_sim, epay_account, django_capture_on_commit_callbacks
):
    payment = Payment.objects.get()
    trade = epay_sim.trade_for(payment.out_trade_no)
    # Someone already refunded this trade in the provider's panel: our request is refused.
    epay_sim.refund(
        {
            "pid": trade["pid"],
            "key": epay_account.credentials_dict()["key"],
            "trade_no": trade["trade_no"],
            "money": trade["money"],
            "out_refund_no": "panel-1",
        }
    )
    _refund_click(operator_client, delivered, django_capture_on_commit_callbacks)
    assert Order.objects.get(pk=delivered.pk).state == OrderState.DELIVERED
    assert Refund.objects.get().status == RefundStatus.FAILED
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert Order.objects.get(pk=delivered.pk).events.filter(kind="refund_failed").exists()


@pytest.mark.parametrize("fault", ["timeout", "fail_5xx"])
def test_refund_in_doubt_is_resolved_by_the_janitor_under_the_same_refund_no(
    operator_client, delivered, epay_sim, settings, fault, django_capture_on_commit_callbacks
):
    settings.PAYMENTS_PROVIDER_TIMEOUTS = (1.0, 0.5)
    epay_sim.faults.hang_seconds = 1.5
    setattr(epay_sim.faults, fault, 1)
    _refund_click(operator_client, delivered, django_capture_on_commit_callbacks)
    refund = Refund.objects.get()
    assert refund.status == RefundStatus.UNKNOWN
    assert Order.objects.get(pk=delivered.pk).state == OrderState.REFUNDING
    assert refunds_sync_due_task.delay().get() == 0  # not due yet
    with time_machine.travel(timezone.now() + timedelta(seconds=16), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert refunds_sync_due_task.delay().get() == 1
    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert Order.objects.get(pk=delivered.pk).state == OrderState.REFUNDED
    # The timed-out request reached the provider: the janitor found it by query. The 5xx one did not:
    # it was sent again under the same refund_no. Either way the provider holds exactly one refund.
    assert _provider_refunds(epay_sim, refund.payment.out_trade_no) == [refund.refund_no]


def test_pending_order_cannot_be_refunded(operator_client, product, epay_account, django_capture_on_commit_callbacks):
    order = buy(product)
    page = _refund_click(operator_client, order, django_capture_on_commit_callbacks).content.decode()
    assert "cannot be refunded" in page
    assert Refund.objects.count() == 0


def test_refunds_are_listed_to_operators(operator_client, delivered, django_capture_on_commit_callbacks):
    _refund_click(operator_client, delivered, django_capture_on_commit_callbacks)
    refund = Refund.objects.get()
    listing = operator_client.get("/admin/payments/refund/").content.decode()
    assert refund.refund_no in listing


def test_paid_but_undeliverable_order_is_refunded_the_same_way(
    operator_client, merchant, epay_account, epay_sim, settings, client, django_capture_on_commit_callbacks
):
    from tests.conftest import make_product

    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    product = make_product(merchant, secrets_count=1)
    order = buy(product)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with time_machine.travel(timezone.now() + timedelta(minutes=20), tick=False):
        from cardshop.services.orders import orders_expire_due

        orders_expire_due()
        buy(product, email="other@example.com")  # the secret goes to someone else meanwhile
        epay_sim.pay(payment.out_trade_no)
        client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no))
    assert Order.objects.get(pk=order.pk).state == OrderState.UNDELIVERABLE
    _refund_click(operator_client, order, django_capture_on_commit_callbacks)
    assert Order.objects.get(pk=order.pk).state == OrderState.REFUNDED
    assert Refund.objects.get().status == RefundStatus.SUCCEEDED
