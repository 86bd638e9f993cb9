"""Issue 9 points 1, 2 and 4: a provider's "paid" always wins, whatever we held; only a create makes a payment
UNKNOWN; a decline the buyer can still recover from is not terminal; a cancelled order's trade is closed."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from cardshop.models import CardSecret, Order, OrderState, SecretStatus
from cardshop.services.checkout import order_payment_start
from cardshop.services.orders import order_cancel, payment_sync
from cardshop.tasks import payments_sync_due_task
from core.money import Money
from payments.channels.base import Observation, ObservedStatus
from payments.models import Payment, PaymentStatus
from payments.services.payments import query_result_apply
from tests.cardshop.helpers import buy, signed_notify

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_callbacks(settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"


def _hold(payment, status: str) -> None:
    """Put the payment in a state we could have reached (a lost close reply, a query that said failed)."""
    Payment.objects.filter(out_trade_no=payment.out_trade_no).update(status=status, next_query_at=None)


@pytest.mark.parametrize("held", [PaymentStatus.FAILED, PaymentStatus.CLOSED, PaymentStatus.UNKNOWN])
def test_a_verified_paid_callback_succeeds_a_payment_we_held_as_given_up(client, product, epay_account, epay_sim, held):
    order = buy(product)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    _hold(payment, held)
    resp = client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no))
    assert resp.content == b"success"
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    assert CardSecret.objects.filter(order=order, status=SecretStatus.SOLD).count() == 1
    # A replay of the same callback is acknowledged and changes nothing.
    assert client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no)).content == b"success"
    assert CardSecret.objects.filter(order=order, status=SecretStatus.SOLD).count() == 1


@pytest.mark.parametrize("held", [PaymentStatus.FAILED, PaymentStatus.CLOSED])
def test_a_query_that_finds_it_paid_succeeds_a_given_up_payment_through_the_late_path(
    product, epay_account, epay_sim, held
):
    order = buy(product)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with time_machine.travel(timezone.now() + timedelta(minutes=20), tick=False):
        from cardshop.services.orders import orders_expire_due

        orders_expire_due()
        _hold(payment, held)
        epay_sim.pay(payment.out_trade_no)  # the notify is lost (nobody listens at the public URL)
        assert payment_sync(out_trade_no=payment.out_trade_no) is True
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    assert order.events.get(kind="paid").detail["late"] is True


def _observation(payment, status: ObservedStatus, provider_status: str) -> Observation:
    return Observation(
        out_trade_no=payment.out_trade_no,
        provider_trade_no=payment.provider_trade_no or "",
        status=status,
        amount=Money(payment.amount_minor, payment.currency),
        event_key=f"{payment.out_trade_no}:{provider_status}",
        provider_status=provider_status,
    )


def test_a_decline_on_a_payable_payment_is_recorded_and_the_retry_delivers_once(
    client, product, epay_account, epay_sim
):
    order = buy(product)
    order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    payment = Payment.objects.get()
    outcome = query_result_apply(
        out_trade_no=payment.out_trade_no, observation=_observation(payment, ObservedStatus.FAILED, "PAYERROR")
    )
    payment.refresh_from_db()
    assert outcome.newly_succeeded is False
    assert payment.status == PaymentStatus.PENDING  # the buyer's QR or cashier is still the live payment
    assert payment.error_code == "PAYERROR"
    assert payment.next_query_at is not None  # the janitor keeps asking
    # The buyer pays with another card on the same trade: delivered once.
    assert client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no)).content == b"success"
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert Order.objects.get().state == OrderState.DELIVERED
    assert CardSecret.objects.filter(order=order, status=SecretStatus.SOLD).count() == 1


def test_a_query_timeout_records_the_error_and_leaves_the_status_alone(product, epay_account, epay_sim, settings):
    settings.PAYMENTS_PROVIDER_TIMEOUTS = (1.0, 0.5)
    order = buy(product)
    shown = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    for hours, fault in ((2, "timeout"), (4, "fail_5xx")):
        epay_sim.faults.hang_seconds = 1.5
        setattr(epay_sim.faults, fault, 1)
        before = Payment.objects.get().query_attempts
        with time_machine.travel(timezone.now() + timedelta(hours=hours), tick=False):
            assert payments_sync_due_task.delay().get() == 0
        payment = Payment.objects.get()
        assert payment.status == PaymentStatus.PENDING, fault  # never UNKNOWN: only a create can be in doubt
        assert payment.error_code  # what went wrong is kept for operators
        assert payment.query_attempts == before + 1 and payment.next_query_at is not None  # next rung
        assert payment.pay_url == shown.pay_url  # the cashier the buyer holds stays the live one
    epay_sim.faults.timeout = epay_sim.faults.fail_5xx = 0


def test_cancelling_an_order_closes_its_open_payments_like_expiry(
    product, epay_account, epay_sim, django_capture_on_commit_callbacks, monkeypatch
):
    from payments import facade

    closed: list[str] = []  # epay cannot close: record what the shop asks of payments instead
    monkeypatch.setattr(facade, "payments_close_for_reference", lambda *, reference: closed.append(reference) or [])
    order = buy(product)
    order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with django_capture_on_commit_callbacks(execute=True):
        order_cancel(order_no=order.order_no)
    assert closed == [order.order_no]
