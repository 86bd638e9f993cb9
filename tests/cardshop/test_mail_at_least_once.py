"""Issue 9 point 9: the delivery mail is marked sent only after the backend accepted it; a sender that died
between claim and send is made up by the sweep once the claim's lease has run out; racing sweeps send once."""

import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import connections
from django.utils import timezone

from cardshop.models import Order, OrderState
from cardshop.services.checkout import order_payment_start
from cardshop.services.notifications import (
    MailNotAccepted,
    order_delivery_email_send,
    order_delivery_emails_resend_missed,
)
from cardshop.tasks import order_delivery_emails_resend_missed_task
from tests.cardshop.helpers import buy, signed_notify

pytestmark = pytest.mark.django_db

MODULE = "tests.cardshop.test_mail_at_least_once"


class WorkerDied(BaseException):
    """What a killed worker looks like from inside: nothing after this line of the sender runs."""


class RaisingBackend(LocmemBackend):
    def send_messages(self, messages):
        raise ConnectionRefusedError("smtp down")


class RefusingBackend(LocmemBackend):
    def send_messages(self, messages):
        return 0


class DyingBackend(LocmemBackend):
    def send_messages(self, messages):
        raise WorkerDied


class SlowBackend(LocmemBackend):
    def send_messages(self, messages):
        time.sleep(0.5)  # long enough for every racing sweep to reach its claim
        return super().send_messages(messages)


@pytest.fixture(autouse=True)
def _no_callbacks(settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"


def delivered_without_mail(client, product, epay_sim) -> Order:
    """A delivered order whose after-commit mail task never ran (the on-commit callbacks are not executed)."""
    order = buy(product, email="buyer@example.com", ip=None)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    assert client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no)).content == b"success"
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    assert mail.outbox == []
    return order


def later(minutes: int):
    return time_machine.travel(timezone.now() + timedelta(minutes=minutes), tick=False)


def test_a_raising_backend_leaves_the_mail_unsent_and_the_sweep_sends_it(
    client, product, epay_account, epay_sim, settings
):
    order = delivered_without_mail(client, product, epay_sim)
    settings.EMAIL_BACKEND = f"{MODULE}.RaisingBackend"
    with pytest.raises(ConnectionRefusedError):
        order_delivery_email_send(order_id=order.pk)
    order.refresh_from_db()
    assert order.notified_at is None
    assert order.notify_claimed_at is None  # claim given back: a retry need not wait for the lease

    with later(6):
        assert order_delivery_emails_resend_missed_task.delay().get() == 0  # backend still down: still unsent
        order.refresh_from_db()
        assert order.notified_at is None
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        assert order_delivery_emails_resend_missed_task.delay().get() == 1
        assert order_delivery_emails_resend_missed_task.delay().get() == 0
    order.refresh_from_db()
    assert order.notified_at is not None
    assert [m.to for m in mail.outbox] == [["buyer@example.com"]]


def test_a_backend_that_accepts_nothing_does_not_mark_the_mail_sent(client, product, epay_account, epay_sim, settings):
    order = delivered_without_mail(client, product, epay_sim)
    settings.EMAIL_BACKEND = f"{MODULE}.RefusingBackend"
    with pytest.raises(MailNotAccepted):
        order_delivery_email_send(order_id=order.pk)
    order.refresh_from_db()
    assert order.notified_at is None
    assert order.notify_claimed_at is None


def test_a_sender_that_dies_after_its_claim_is_made_up_by_the_sweep_once(
    client, product, epay_account, epay_sim, settings
):
    order = delivered_without_mail(client, product, epay_sim)
    settings.EMAIL_BACKEND = f"{MODULE}.DyingBackend"
    with pytest.raises(WorkerDied):
        order_delivery_email_send(order_id=order.pk)
    order.refresh_from_db()
    assert order.notified_at is None
    assert order.notify_claimed_at is not None  # the claim is left behind, as after a real crash
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    assert order_delivery_email_send(order_id=order.pk) is False  # a live claim is respected
    with later(6):  # past the sweep's grace but inside the lease: the sender might still be at work
        assert order_delivery_emails_resend_missed_task.delay().get() == 0
    with later(11):  # the lease (10 minutes) has run out
        assert order_delivery_emails_resend_missed_task.delay().get() == 1
        assert order_delivery_emails_resend_missed_task.delay().get() == 0
    with later(30):
        assert order_delivery_emails_resend_missed_task.delay().get() == 0
    assert [m.to for m in mail.outbox] == [["buyer@example.com"]]


@pytest.mark.django_db(transaction=True)
def test_racing_sweeps_send_one_mail(require_postgres, client, product, epay_account, epay_sim, settings):
    order = buy(product, email="buyer@example.com", ip=None)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    assert client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no)).content == b"success"
    # Without a test transaction the on-commit mail task ran at once: undo it, as if it had been lost.
    Order.objects.filter(pk=order.pk).update(notified_at=None, notify_claimed_at=None)
    mail.outbox.clear()
    settings.EMAIL_BACKEND = f"{MODULE}.SlowBackend"
    n = 4
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def sweep(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = order_delivery_emails_resend_missed(older_than_seconds=0)
        except Exception as exc:  # asserted below
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweep, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert sorted(results) == [0, 0, 0, 1]
    assert [m.to for m in mail.outbox] == [["buyer@example.com"]]
    order.refresh_from_db()
    assert order.notified_at is not None
