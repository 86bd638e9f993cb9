"""A create that times out leaves the payment UNKNOWN (never failed); the janitor's query settles it.
A query that times out changes no status."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from cardshop.models import Order, OrderState
from cardshop.services.checkout import order_payment_start
from cardshop.tasks import payments_sync_due_task
from payments.contracts import PaymentUnavailable
from payments.models import Payment, PaymentStatus
from payments.schedule import next_query_at
from tests.cardshop.helpers import buy

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("fault", ["timeout", "fail_5xx"])
def test_create_in_doubt_is_unknown_then_the_janitor_finds_it_paid(
    product, epay_account, epay_sim, settings, fault, django_capture_on_commit_callbacks
):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"  # the notify is lost too
    settings.PAYMENTS_PROVIDER_TIMEOUTS = (1.0, 0.5)
    epay_sim.faults.hang_seconds = 1.5
    setattr(epay_sim.faults, fault, 1)
    order = buy(product)
    with pytest.raises(PaymentUnavailable):
        order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.UNKNOWN
    if fault == "timeout":  # the provider did record it; the buyer pays at its cashier
        epay_sim.pay(payment.out_trade_no)
    with time_machine.travel(timezone.now() + timedelta(seconds=16), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            payments_sync_due_task.delay().get()
    payment.refresh_from_db()
    if fault == "timeout":
        assert payment.status == PaymentStatus.SUCCEEDED
        assert Order.objects.get().state == OrderState.DELIVERED
    else:  # the 5xx recorded nothing: still unknown, asked again later, never failed
        assert payment.status == PaymentStatus.UNKNOWN
        assert payment.query_attempts == 1 and payment.next_query_at is not None


def test_ladder_backs_off_then_gives_up_after_a_day():
    created = timezone.now()
    gaps, now, attempts = [], created, 0
    while (at := next_query_at(attempts=attempts, created_at=created, now=now)) is not None:
        gaps.append(int((at - now).total_seconds()))
        now, attempts = at, attempts + 1
    assert gaps[:6] == [15, 60, 180, 600, 3600, 3600]
    assert set(gaps[5:]) == {3600}
    assert now - created <= timedelta(days=1) < now - created + timedelta(hours=1, seconds=1)


def test_query_that_times_out_leaves_a_pending_payment_pending_and_a_later_query_finds_it_paid(
    product, epay_account, epay_sim, settings
):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    settings.PAYMENTS_PROVIDER_TIMEOUTS = (1.0, 0.5)
    order = buy(product)
    order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    epay_sim.faults.timeout, epay_sim.faults.hang_seconds = 1, 1.5
    with time_machine.travel(timezone.now() + timedelta(seconds=16), tick=False):
        assert payments_sync_due_task.delay().get() == 0
    payment = Payment.objects.get()
    # Only a create can be in doubt: the QR the buyer holds stays the live payment, the error is recorded.
    assert payment.status == PaymentStatus.PENDING and payment.error_code == "timeout"
    assert payment.next_query_at is not None  # still on the ladder
    epay_sim.pay(payment.out_trade_no)
    with time_machine.travel(timezone.now() + timedelta(seconds=80), tick=False):
        payments_sync_due_task.delay().get()
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert Order.objects.get().state == OrderState.DELIVERED
