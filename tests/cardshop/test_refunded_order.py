"""Issue 10: a refunded order as the buyer sees it. The order page tells the amount and the dates (requested,
done) in an unambiguous time; the buyer is mailed once when the refund is complete, at least once like the
delivery mail (a lost task or a dead sender is made up by the sweep, a replayed callback sends nothing)."""

import datetime as dt
import json
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.utils import timezone

from cardshop.models import CardSecret, Order, OrderState
from cardshop.services.checkout import order_payment_start
from cardshop.services.notifications import (
    order_link_token,
    order_link_token_check,
    order_refund_email_send,
    order_refund_emails_resend_missed,
)
from cardshop.services.refunds import order_refund_request
from cardshop.tasks import order_refund_emails_resend_missed_task, refund_submit_task
from payments.models import ChannelAccount, Payment, PaymentStatus, Refund, RefundStatus
from payments.simulators.wechatpay import WechatPaySimulator
from tests.cardshop.helpers import buy, signed_notify
from tests.conftest import make_product

pytestmark = pytest.mark.django_db

MODULE = "tests.cardshop.test_refunded_order"
IN_PROGRESS = "Refund in progress — the money goes back to the way you paid."


class RaisingBackend(LocmemBackend):
    def send_messages(self, messages):
        raise ConnectionRefusedError("smtp down")


@pytest.fixture(autouse=True)
def _no_callbacks(settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"  # the simulators' own callbacks go nowhere


@pytest.fixture
def delivered(client, product, epay_sim) -> Order:
    """A delivered order (epay), whose delivery mail is left out of the outbox: only refund mails are counted."""
    order = buy(product, email="buyer@example.com")
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    epay_sim.pay(payment.out_trade_no)  # paid at the provider; its notify to port 9 is lost, we deliver it here
    assert client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no)).content == b"success"
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    assert mail.outbox == []
    return order


def later(**delta):
    return time_machine.travel(timezone.now() + timedelta(**delta), tick=False)


def order_page(client, order: Order) -> str:
    """The order page as the buyer opens it from their mailed link."""
    resp = client.get(f"/orders/{order.order_no}/?t={order_link_token(order.order_no)}", follow=True)
    assert resp.status_code == 200
    return resp.content.decode()


def shown(at) -> str:
    """How the page writes an instant before the browser turns it into the buyer's own zone."""
    local = timezone.localtime(at)
    return f"{local:%Y-%m-%d %H:%M} (UTC{local:%z})"


def _time_tag(at) -> str:
    """The <time> the page writes: the UTC instant for the browser, the shop's time with its offset as text."""
    return f'<time class="local-time" datetime="{at.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}">{shown(at)}</time>'


def codes_of(order: Order) -> list[str]:
    return [s.secret for s in CardSecret.objects.filter(order=order).order_by("pk")]


def requested_at(order: Order):
    return order.events.get(kind="refund_requested").created_at


def test_the_order_page_follows_a_refund_from_requested_to_done(client, delivered):
    codes = codes_of(delivered)
    assert codes and all(c in order_page(client, delivered) for c in codes)  # delivered: the codes are shown

    # The operator refunds; the after-commit submit has not run yet: the refund is in progress.
    view = order_refund_request(order_no=delivered.order_no, actor="op", reason="buyer asked")
    assert Order.objects.get(pk=delivered.pk).state == OrderState.REFUNDING
    html = order_page(client, delivered)
    asked = requested_at(delivered)
    assert re.search(r'class="price refund-amount">¥9\.90<', html)
    assert IN_PROGRESS in html
    assert f"Refund requested on {_time_tag(asked)}." in html
    assert "Refunded on" not in html
    assert "The items of a refunded order are no longer shown." in html
    assert not any(c in html for c in codes)
    assert "CST" not in html
    assert "cardshop/local-time.js" in html

    # Two days later the channel confirms it (the submit task runs): refunded, on that day.
    with later(days=2):
        assert refund_submit_task.delay(view.refund_no).get() == RefundStatus.SUCCEEDED
    order = Order.objects.get(pk=delivered.pk)
    assert order.state == OrderState.REFUNDED
    assert (order.refunded_at - asked) >= timedelta(days=2)
    html = order_page(client, order)
    assert re.search(r'class="price refund-amount">¥9\.90<', html)
    assert f"Refunded on {_time_tag(order.refunded_at)}." in html
    assert f"Refund requested on {_time_tag(asked)}." in html
    assert IN_PROGRESS not in html
    assert not any(c in html for c in codes)
    assert "CST" not in html


def test_the_refund_mail_is_sent_once_when_the_refund_completes(client, delivered, django_capture_on_commit_callbacks):
    codes = codes_of(delivered)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        order_refund_request(order_no=delivered.order_no, actor="op")
    assert len(callbacks) >= 2  # the refund's submit, and from its commit the refund mail
    order = Order.objects.get(pk=delivered.pk)
    assert order.state == OrderState.REFUNDED and order.refund_notified_at is not None

    (message,) = mail.outbox
    assert message.to == ["buyer@example.com"]
    assert message.subject == f"Your order {order.order_no} was refunded"
    assert f"Your order {order.order_no} was refunded: ¥9.90." in message.body
    assert "The money goes back to the way you paid." in message.body
    assert not any(c in message.body for c in codes)
    link = re.search(r"https?://\S+", message.body).group(0)
    parts = urlsplit(link)
    assert parts.path == f"/orders/{order.order_no}/"
    assert order_link_token_check(parse_qs(parts.query)["t"][0]) == order.order_no
    assert "&amp;" not in message.body and "&#" not in message.body  # plain text, not HTML-escaped

    # The link opens the refunded order for a browser that never saw it.
    client.cookies.clear()
    resp = client.get(link.removeprefix("http://127.0.0.1:9"), follow=True)
    assert f"Refunded on {_time_tag(order.refunded_at)}." in resp.content.decode()

    # Later sweeps and a second send find it sent.
    with later(hours=1):
        assert order_refund_emails_resend_missed_task.delay().get() == 0
    assert order_refund_email_send(order_id=order.pk) is False
    assert len(mail.outbox) == 1


def test_no_refund_mail_while_the_refund_is_in_progress(delivered):
    order_refund_request(order_no=delivered.order_no, actor="op")
    order = Order.objects.get(pk=delivered.pk)
    assert order.state == OrderState.REFUNDING
    assert order_refund_email_send(order_id=order.pk) is False
    with later(hours=1):
        assert order_refund_emails_resend_missed(older_than_seconds=0) == 0
    order.refresh_from_db()
    assert order.refund_notified_at is None and order.refund_notify_claimed_at is None
    assert mail.outbox == []


def test_the_sweep_sends_a_refund_mail_whose_task_was_lost(delivered):
    view = order_refund_request(order_no=delivered.order_no, actor="op")
    # The submit ran, but the mail task queued on its commit was lost (on-commit callbacks are not executed).
    assert refund_submit_task.delay(view.refund_no).get() == RefundStatus.SUCCEEDED
    order = Order.objects.get(pk=delivered.pk)
    assert order.state == OrderState.REFUNDED and order.refund_notified_at is None
    assert mail.outbox == []

    assert order_refund_emails_resend_missed_task.delay().get() == 0  # too recent: the task may still come
    with later(minutes=6):
        assert order_refund_emails_resend_missed_task.delay().get() == 1
        assert order_refund_emails_resend_missed_task.delay().get() == 0
    with later(minutes=30):
        assert order_refund_emails_resend_missed_task.delay().get() == 0
    assert [m.to for m in mail.outbox] == [["buyer@example.com"]]
    order.refresh_from_db()
    assert order.refund_notified_at is not None


def test_a_raising_backend_leaves_the_refund_mail_unsent_for_the_sweep(delivered, settings):
    view = order_refund_request(order_no=delivered.order_no, actor="op")
    assert refund_submit_task.delay(view.refund_no).get() == RefundStatus.SUCCEEDED
    order = Order.objects.get(pk=delivered.pk)
    settings.EMAIL_BACKEND = f"{MODULE}.RaisingBackend"
    with pytest.raises(ConnectionRefusedError):
        order_refund_email_send(order_id=order.pk)
    order.refresh_from_db()
    assert order.refund_notified_at is None
    assert order.refund_notify_claimed_at is None  # the claim is given back: a retry need not wait for the lease

    with later(minutes=6):
        assert order_refund_emails_resend_missed_task.delay().get() == 0  # backend still down
        order.refresh_from_db()
        assert order.refund_notified_at is None
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        assert order_refund_emails_resend_missed_task.delay().get() == 1
    order.refresh_from_db()
    assert order.refund_notified_at is not None
    assert len(mail.outbox) == 1


# ---- a refund the channel settles later, by callback (WeChat Pay answers PROCESSING) ---------------------


@pytest.fixture
def wx(merchant):
    sim = WechatPaySimulator(refund_delay=None).start()  # refunds stay PROCESSING until complete_refund()
    acct = sim.account()
    ChannelAccount.objects.create(
        code="wechatpay",
        name="WeChat Pay",
        merchant_no=acct.merchant_no,
        base_url=acct.base_url,
        currency=acct.currency,
        credentials=json.dumps(acct.credentials),
    )
    yield sim
    sim.stop()


def _post(client, notify):
    return client.post("/notify/wechatpay/", data=notify.body, content_type=notify.content_type, headers=notify.headers)


def test_a_replayed_refund_callback_sends_no_second_mail(client, merchant, wx, django_capture_on_commit_callbacks):
    product = make_product(merchant, secrets_count=2)
    order = buy(product, email="wx@example.com")
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", channel_code="wechatpay")
    wx.faults.drop_notify = 1
    wx.pay(payment.out_trade_no)
    assert _post(client, wx.notify_request(payment.out_trade_no)).status_code in (200, 204)
    assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED
    mail.outbox.clear()  # the delivery mail is not what this test counts

    with django_capture_on_commit_callbacks(execute=True):
        view = order_refund_request(order_no=order.order_no, actor="op")
    assert Refund.objects.get().status == RefundStatus.PENDING  # the channel said PROCESSING
    assert IN_PROGRESS in order_page(client, order)
    assert mail.outbox == []

    wx.faults.drop_notify = 1  # the channel's own callback goes astray; we post it as it would arrive
    wx.complete_refund(view.refund_no, background=False)
    callback = wx.refund_notify_request(view.refund_no)
    with django_capture_on_commit_callbacks(execute=True):
        assert _post(client, callback).status_code in (200, 204)
    assert Order.objects.get(pk=order.pk).state == OrderState.REFUNDED
    assert Payment.objects.get().status == PaymentStatus.REFUNDED
    assert [m.to for m in mail.outbox] == [["wx@example.com"]]

    with django_capture_on_commit_callbacks(execute=True) as replay:
        assert _post(client, callback).status_code in (200, 204)  # the provider re-notifies
    assert replay == []  # nothing queued: the inbox knew the event
    with later(minutes=11):
        assert order_refund_emails_resend_missed_task.delay().get() == 0
    assert len(mail.outbox) == 1
    assert list(Order.objects.get(pk=order.pk).events.filter(kind="refunded").values_list("kind", flat=True)) == [
        "refunded"
    ]


# ---- a delivered order whose second payment was returned --------------------------------------------------


def test_a_returned_second_payment_is_shown_and_the_codes_stay(
    client, product, epay_sim, django_capture_on_commit_callbacks
):
    order = buy(product)
    first = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    Payment.objects.filter(out_trade_no=first.out_trade_no).update(status=PaymentStatus.CLOSED, next_query_at=None)
    second = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with django_capture_on_commit_callbacks(execute=True):
        for payment in (second, first):  # the buyer paid a QR we had closed (its close raced the payment), too
            epay_sim.faults.drop_notify = 1
            epay_sim.pay(payment.out_trade_no)
            assert client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no)).content == b"success"
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    refund = Refund.objects.get()
    assert refund.status == RefundStatus.SUCCEEDED and refund.payment.out_trade_no == first.out_trade_no

    html = order_page(client, order)
    assert "This order was paid twice. The second payment, ¥9.90, is returned to you" in html
    done = order.events.get(kind="extra_payment_refund_succeeded").created_at
    assert f"Refunded on {_time_tag(done)}." in html
    assert f"Refund requested on {_time_tag(order.events.get(kind='extra_payment').created_at)}." in html
    assert all(c in html for c in codes_of(order))  # what was bought stays the buyer's
    assert mail.outbox and all("refunded" not in m.subject for m in mail.outbox)  # the order was not refunded


# ---- the deploy: orders refunded before the mail existed are not mailed months late -----------------------


def test_the_migration_marks_orders_refunded_before_it_as_told(delivered):
    import importlib

    from django.apps import apps

    view = order_refund_request(order_no=delivered.order_no, actor="op")
    assert refund_submit_task.delay(view.refund_no).get() == RefundStatus.SUCCEEDED
    other = buy(delivered.product, email="pending@example.com")  # not refunded: left alone
    order = Order.objects.get(pk=delivered.pk)
    assert order.refund_notified_at is None

    migration = importlib.import_module("cardshop.migrations.0014_order_refund_mail")
    migration.refunded_before_the_mail_existed(apps, None)

    order.refresh_from_db()
    assert order.refund_notified_at == order.refunded_at
    assert Order.objects.get(pk=other.pk).refund_notified_at is None
    with later(hours=1):
        assert order_refund_emails_resend_missed_task.delay().get() == 0
    assert mail.outbox == []
