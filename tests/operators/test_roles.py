"""Point 10: each operator power needs its own permission. A view-only staff login is refused every one of them
on the admin's HTTP endpoints (403, or the action is absent and a forged POST changes nothing); a login holding
the power succeeds, and each use writes an audit event naming the actor."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from cardshop.models import CardSecret, Order, OrderState, SecretRevealLog
from cardshop.services.checkout import order_create, order_payment_start
from cardshop.services.orders import orders_expire_due
from cardshop.services.stock import card_secrets_import
from core.models import AuditEvent
from payments import breaker
from payments.models import ChannelAccount, Refund
from tests.cardshop.helpers import buy, signed_notify
from tests.conftest import make_product
from tests.factories.payments import EpayAccountFactory

pytestmark = pytest.mark.django_db

ORDERS = "/admin/cardshop/order/"


def _refund_post(client, order, **extra):
    return client.post(ORDERS, {"action": "refund", "_selected_action": [order.pk], **extra}, follow=True)


# ---- refund ---------------------------------------------------------------------------------------------


def test_view_only_staff_cannot_refund(viewer, paid_order, django_capture_on_commit_callbacks):
    listing = viewer.get(ORDERS).content.decode()
    assert 'value="refund"' not in listing  # the action is not offered
    with django_capture_on_commit_callbacks(execute=True):
        resp = _refund_post(viewer, paid_order, post="yes", reason="forged")
    assert resp.status_code == 200  # the list again: the forged action is not one of the viewer's
    assert Order.objects.get(pk=paid_order.pk).state == OrderState.DELIVERED
    assert Refund.objects.count() == 0 and AuditEvent.objects.count() == 0


def test_refund_asks_for_confirmation_and_a_reason_first(granted, paid_order, django_capture_on_commit_callbacks):
    client = granted("cardshop.refund_order")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        first = _refund_post(client, paid_order, index="0")  # the changelist's action form
        blank = _refund_post(client, paid_order, post="yes", reason="  ")
    page = first.content.decode()
    assert first.status_code == 200 and "Refund these orders?" in page
    assert paid_order.order_no in page and 'name="reason"' in page
    assert 'href="/admin/cardshop/order/"' in page  # the cancel path: back to the list
    assert blank.status_code == 200 and "This field is required." in blank.content.decode()
    assert callbacks == []
    # Cancelling is following that link: it shows the list and changes nothing.
    assert client.get(ORDERS).status_code == 200
    assert Order.objects.get(pk=paid_order.pk).state == OrderState.DELIVERED
    assert Refund.objects.count() == 0 and AuditEvent.objects.count() == 0


def test_refund_with_the_power_and_a_reason_is_audited(granted, paid_order, django_capture_on_commit_callbacks):
    client = granted("cardshop.refund_order")
    with django_capture_on_commit_callbacks(execute=True):
        resp = _refund_post(client, paid_order, post="yes", reason="buyer was charged twice")
    assert "refund R" in resp.content.decode()
    assert Order.objects.get(pk=paid_order.pk).state == OrderState.REFUNDED
    refund = Refund.objects.get()
    event = AuditEvent.objects.get()
    assert (event.actor, event.action, event.target) == ("op-refund_order", "order.refund", f"order:{paid_order.pk}")
    assert event.detail["reason"] == "buyer was charged twice"
    assert event.detail["refund_no"] == refund.refund_no and event.detail["order_no"] == paid_order.order_no
    assert refund.reason == "buyer was charged twice"


# ---- reveal a card secret -------------------------------------------------------------------------------


def test_view_only_staff_cannot_reveal_a_secret(viewer, product):
    secret = CardSecret.objects.filter(product=product).first()
    url = f"/admin/cardshop/cardsecret/{secret.pk}/reveal/"
    get, post = viewer.get(url), viewer.post(url, {"reason": "curious"})
    assert (get.status_code, post.status_code) == (403, 403)
    assert secret.secret not in post.content.decode()
    assert SecretRevealLog.objects.count() == 0 and AuditEvent.objects.count() == 0


def test_reveal_with_the_power_is_audited_without_the_secret(granted, product):
    client = granted("cardshop.reveal_secret")
    secret = CardSecret.objects.filter(product=product).first()
    shown = client.post(f"/admin/cardshop/cardsecret/{secret.pk}/reveal/", {"reason": "buyer says invalid"})
    assert secret.secret in shown.content.decode()
    event = AuditEvent.objects.get()
    assert (event.actor, event.action, event.target) == (
        "op-reveal_secret",
        "card_secret.reveal",
        f"cardsecret:{secret.pk}",
    )
    assert event.detail == {"reason": "buyer says invalid"}
    assert secret.secret not in json.dumps(event.detail)


# ---- manual fulfilment ----------------------------------------------------------------------------------


@pytest.fixture
def manual_paid(merchant, epay_account, epay_sim, settings, client):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    product = make_product(merchant, secrets_count=0, kind="manual")
    order = buy(product, email="m@example.com", ip=None)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no))
    assert Order.objects.get(pk=order.pk).state == OrderState.PAID
    return order


def test_view_only_staff_cannot_fulfil(viewer, manual_paid):
    url = f"/admin/cardshop/order/{manual_paid.pk}/fulfil/"
    assert viewer.get(url).status_code == 403
    assert viewer.post(url, {"note": "forged gems"}).status_code == 403
    assert Order.objects.get(pk=manual_paid.pk).state == OrderState.PAID
    assert AuditEvent.objects.count() == 0


def test_fulfil_with_the_power_is_audited_without_the_note(granted, manual_paid):
    client = granted("cardshop.fulfil_order")
    client.post(f"/admin/cardshop/order/{manual_paid.pk}/fulfil/", {"note": "GIFT-KEY-123"})
    assert Order.objects.get(pk=manual_paid.pk).state == OrderState.DELIVERED
    event = AuditEvent.objects.get()
    assert (event.actor, event.action, event.target) == (
        "op-fulfil_order",
        "order.fulfil_manual",
        f"order:{manual_paid.pk}",
    )
    assert "GIFT-KEY-123" not in json.dumps(event.detail)


# ---- delivery retry -------------------------------------------------------------------------------------


@pytest.fixture
def undeliverable(merchant, epay_account, epay_sim, settings, client):
    """Paid after expiry, when another buyer had taken the only secret; then restocked."""
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    product = make_product(merchant, secrets_count=1)
    order = order_create(
        product_id=product.pk, quantity=1, email="u@example.com", query_password="secret1", buyer_ip=None
    )
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with time_machine.travel(timezone.now() + timedelta(minutes=20), tick=False):
        orders_expire_due()
        order_create(product_id=product.pk, quantity=1, email="v@example.com", query_password="secret1", buyer_ip=None)
        client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no))
    assert Order.objects.get(pk=order.pk).state == OrderState.UNDELIVERABLE
    card_secrets_import(product_id=product.pk, text="RESTOCKED-1")
    return order


def test_view_only_staff_cannot_retry_delivery(viewer, undeliverable):
    assert 'value="retry_delivery"' not in viewer.get(ORDERS).content.decode()
    resp = viewer.post(ORDERS, {"action": "retry_delivery", "_selected_action": [undeliverable.pk]}, follow=True)
    assert resp.status_code == 200
    assert Order.objects.get(pk=undeliverable.pk).state == OrderState.UNDELIVERABLE
    assert AuditEvent.objects.count() == 0


def test_retry_delivery_with_the_power_is_audited(granted, undeliverable):
    client = granted("cardshop.retry_delivery")
    client.post(ORDERS, {"action": "retry_delivery", "_selected_action": [undeliverable.pk]})
    assert Order.objects.get(pk=undeliverable.pk).state == OrderState.DELIVERED
    event = AuditEvent.objects.get()
    assert (event.actor, event.action, event.target) == (
        "op-retry_delivery",
        "order.delivery_retry",
        f"order:{undeliverable.pk}",
    )
    assert event.detail["delivered"] is True


# ---- breaker control ------------------------------------------------------------------------------------

HEALTH = "/admin/payments/channelaccount/health/"


def test_view_only_staff_sees_health_but_cannot_move_a_breaker(viewer):
    account = EpayAccountFactory()
    page = viewer.get(HEALTH)
    assert page.status_code == 200 and 'name="action"' not in page.content.decode()  # no breaker buttons
    assert viewer.post(HEALTH, {"account": account.pk, "action": "open"}).status_code == 403
    assert breaker.breaker_store().states([account.pk], 0.0)[account.pk] == "closed"
    assert AuditEvent.objects.count() == 0


def test_breaker_control_with_the_power_is_audited(granted):
    client = granted("payments.control_breaker")
    account = EpayAccountFactory()
    client.post(HEALTH, {"account": account.pk, "action": "open"})
    assert breaker.breaker_store().states([account.pk], 0.0)[account.pk] == "forced_open"
    client.post(HEALTH, {"account": account.pk, "action": "auto"})
    assert list(AuditEvent.objects.order_by("pk").values_list("actor", "action", "target", "detail")) == [
        ("op-control_breaker", "channel_account.breaker", f"channelaccount:{account.pk}", {"to": "open"}),
        ("op-control_breaker", "channel_account.breaker", f"channelaccount:{account.pk}", {"to": "auto"}),
    ]


# ---- channel account edits ------------------------------------------------------------------------------


def _account_form(account: ChannelAccount, **changes) -> dict:
    data = {
        "code": account.code,
        "name": account.name,
        "merchant_no": account.merchant_no,
        "base_url": account.base_url,
        "currency": account.currency,
        "credentials": "",
        "enabled": "on",
        "priority": account.priority,
        "fee_rate_bp": account.fee_rate_bp,
        "fee_fixed_minor": account.fee_fixed_minor,
        **({"refund_returns_fee": "on"} if account.refund_returns_fee else {}),  # a checkbox posts only when on
    }
    data.update(changes)
    return data


def test_view_only_staff_cannot_add_or_edit_a_channel_account(viewer):
    account = EpayAccountFactory(name="epay A")
    change = f"/admin/payments/channelaccount/{account.pk}/change/"
    page = viewer.get(change)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()  # read-only view
    assert viewer.post(change, _account_form(account, name="hijacked", fee_rate_bp=1)).status_code == 403
    add = _account_form(account, name="new", credentials=json.dumps({"key": "k" * 16}))
    assert viewer.post("/admin/payments/channelaccount/add/", add).status_code == 403
    assert list(ChannelAccount.objects.values_list("name", "fee_rate_bp")) == [("epay A", 0)]
    assert AuditEvent.objects.count() == 0


def test_channel_account_edit_with_the_power_is_audited_without_credentials(granted):
    client = granted("payments.edit_channel_account")
    account = EpayAccountFactory(name="epay A")
    resp = client.post(
        f"/admin/payments/channelaccount/{account.pk}/change/",
        _account_form(account, name="epay B", credentials=json.dumps({"key": "NEW-KEY-0123456789"})),
    )
    assert resp.status_code == 302
    account.refresh_from_db()
    assert account.name == "epay B" and account.credentials_dict() == {"key": "NEW-KEY-0123456789"}
    event = AuditEvent.objects.get()
    assert (event.actor, event.action, event.target) == (
        "op-edit_channel_account",
        "channel_account.edit",
        f"channelaccount:{account.pk}",
    )
    assert event.detail["changed"] == ["credentials", "name"]
    assert "NEW-KEY" not in json.dumps(event.detail)
