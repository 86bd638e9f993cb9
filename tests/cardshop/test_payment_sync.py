"""Pull path: the janitor queries payments still pending on their back-off ladder and applies the answer
through the same function as a notify."""

from datetime import timedelta

import pytest
import requests
import time_machine
from django.core import mail
from django.utils import timezone

from cardshop.models import CardSecret, Order, OrderState, SecretStatus
from cardshop.services.checkout import order_create, order_payment_start
from cardshop.tasks import payments_sync_due_task
from payments.models import Payment, PaymentStatus

pytestmark = pytest.mark.django_db


def test_lost_notify_is_recovered_by_the_sync_task(
    product, epay_account, epay_sim, settings, django_capture_on_commit_callbacks
):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"  # the notify is lost: nobody listens there
    order = order_create(
        product_id=product.pk, quantity=1, email="a@example.com", query_password="secret1", buyer_ip=None
    )
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with pytest.raises(requests.ConnectionError):
        epay_sim.pay_trade(epay_sim.trade_for(payment.out_trade_no)["trade_no"])
    assert payments_sync_due_task.delay().get() == 0  # too young to query yet
    with time_machine.travel(timezone.now() + timedelta(seconds=16), tick=False):
        with django_capture_on_commit_callbacks(execute=True) as effects:
            assert payments_sync_due_task.delay().get() == 1
        assert len(effects) == 2  # the buyer mail and the channel's health outcome, both only after commit
        assert payments_sync_due_task.delay().get() == 0  # nothing left, nothing twice
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert CardSecret.objects.filter(order=order, status=SecretStatus.SOLD).count() == 1
    assert order.events.get(kind="paid").detail["source"] == "query"
    assert len(mail.outbox) == 1


def test_unpaid_payment_stays_pending_after_sync(product, epay_account, epay_sim, settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    order = order_create(
        product_id=product.pk, quantity=1, email="a@example.com", query_password="secret1", buyer_ip=None
    )
    order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with time_machine.travel(timezone.now() + timedelta(seconds=16), tick=False):
        assert payments_sync_due_task.delay().get() == 0
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.PENDING
    assert payment.query_attempts == 1  # asked once, next rung in a minute
    assert payment.next_query_at > timezone.now() + timedelta(seconds=50)
    assert Order.objects.get().state == OrderState.PENDING
