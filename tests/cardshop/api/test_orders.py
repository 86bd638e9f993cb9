"""Orders through the API: made for the merchant's own site (the checkout's rules and risk), listed with filters,
read, cancelled; the buyer is sent to the signed pay URL, which opens the order's page."""

from __future__ import annotations

import re
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.hashers import is_password_usable
from django.core import mail
from django.utils import timezone

from cardshop.models import CardSecret, Order, OrderState, SecretStatus
from cardshop.selectors import orders_for_lookup
from core.models import AuditEvent
from risk.models import Assessment
from risk.services import list_entry_add
from tests.cardshop.api.conftest import client_for, key_for
from tests.factories.cardshop import OrderFactory
from tests.risk.test_decision_paths import publish

ORDERS = "/api/v1/orders/"


def test_an_order_is_made_for_the_merchants_site_and_its_pay_url_opens_it(api, shop_a, client):
    made = api.post(ORDERS, {"product": shop_a.pk, "quantity": 2, "email": "Buyer@Example.com"}, format="json")
    assert made.status_code == 201
    order = Order.objects.get()
    body = made.json()
    assert body | {"created_at": None, "expires_at": None, "pay_url": None} == {
        "id": order.order_no,
        "state": "pending",
        "product": shop_a.pk,
        "quantity": 2,
        "list_price": {"amount_minor": shop_a.price_minor, "currency": "CNY"},
        "unit_price": {"amount_minor": shop_a.price_minor, "currency": "CNY"},
        "discount": {"amount_minor": 0, "currency": "CNY"},
        "coupon": None,
        "amount": {"amount_minor": shop_a.price_minor * 2, "currency": "CNY"},
        "email": "buyer@example.com",
        "custom_input": {},
        "created_at": None,
        "expires_at": None,
        "paid_at": None,
        "delivered_at": None,
        "refunded_at": None,
        "pay_url": None,
    }
    assert CardSecret.objects.filter(order=order, status=SecretStatus.RESERVED).count() == 2
    assert Assessment.objects.get().order_no == order.order_no  # risk decided it, as at checkout
    assert not is_password_usable(order.query_password_hash)  # no lookup password: no PBKDF2 spent on it
    assert orders_for_lookup(order_no_or_email=order.email, query_password="anything") == []
    page = client.get(body["pay_url"], follow=True)  # the buyer, with no session of the shop's yet
    assert page.status_code == 200 and order.order_no in page.content.decode()
    assert f"/orders/{order.order_no}/pay/" in page.content.decode()


def test_an_order_for_another_merchants_product_or_a_bad_one_is_refused_and_makes_nothing(api, shop_a, shop_b):
    for body, status, code, param in [
        ({"product": shop_b.pk, "email": "b@example.com"}, 404, "not_found", None),
        ({"product": shop_a.pk, "quantity": 9, "email": "b@example.com"}, 400, "quantity", "quantity"),
        ({"product": shop_a.pk, "quantity": 4, "email": "b@example.com"}, 409, "out_of_stock", None),
        ({"product": shop_a.pk, "email": "not-an-email"}, 400, "invalid", "email"),
        ({"product": "1", "email": "b@example.com"}, 400, "invalid", "product"),
    ]:
        answer = api.post(ORDERS, body, format="json")
        assert answer.status_code == status, body
        assert (answer.json()["error"]["code"], answer.json()["error"]["param"]) == (code, param), body
    assert not Order.objects.exists() and not CardSecret.objects.filter(status=SecretStatus.RESERVED).exists()


def test_a_challenged_order_answers_with_where_the_buyer_confirms_and_a_blocked_one_is_refused(api, shop_a, client):
    publish(("new bulk", "quantity >= 2 and not buyer_paid_before", "challenge", "new_buyer_bulk"))
    asked = api.post(ORDERS, {"product": shop_a.pk, "quantity": 2, "email": "new@example.com"}, format="json")
    assert asked.status_code == 409 and asked.json()["error"]["code"] == "challenge_required"
    assert not Order.objects.exists() and not CardSecret.objects.filter(status=SecretStatus.RESERVED).exists()
    confirm_url = asked.json()["error"]["confirm_url"]
    assert confirm_url.startswith(settings.CARDSHOP_PUBLIC_URL + "/checkout/confirm/")
    code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)  # mailed to the buyer, not to the merchant
    confirmed = client.post(confirm_url.removeprefix(settings.CARDSHOP_PUBLIC_URL), {"answer": code})
    order = Order.objects.get()
    assert confirmed.status_code == 302 and confirmed["Location"] == f"/orders/{order.order_no}/pay/"
    assert api.get(f"{ORDERS}{order.order_no}/").json()["state"] == "pending"  # the merchant finds it made

    list_entry_add(kind="block", field="email", value="bad@example.com")
    blocked = api.post(ORDERS, {"product": shop_a.pk, "email": "bad@example.com"}, format="json")
    assert blocked.status_code == 409 and blocked.json()["error"]["code"] == "risk_blocked"
    assert Order.objects.count() == 1


def test_orders_are_listed_newest_first_with_filters(api, shop_a, shop_b):
    now = timezone.now()
    old = OrderFactory(
        product=shop_a, state=OrderState.DELIVERED, email="x@example.com", created_at=now - timedelta(days=3)
    )
    paid = OrderFactory(product=shop_a, state=OrderState.PAID, email="y@example.com")
    pending = OrderFactory(product=shop_a, email="x@example.com")
    OrderFactory(product=shop_b)  # the neighbour's, never listed

    def listed(**params):
        answer = api.get(ORDERS, params)
        assert answer.status_code == 200, answer.json()
        return [o["id"] for o in answer.json()["data"]]

    assert listed() == [pending.order_no, paid.order_no, old.order_no]
    assert listed(state="paid") == [paid.order_no]
    assert listed(email="X@example.com") == [pending.order_no, old.order_no]
    assert listed(created_gte=(now - timedelta(days=1)).isoformat()) == [pending.order_no, paid.order_no]
    assert listed(created_lt=(now - timedelta(days=1)).isoformat()) == [old.order_no]
    wrong = api.get(ORDERS, {"state": "lost"})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "state"
    assert api.get(ORDERS, {"sate": "paid"}).json()["error"]["param"] == "sate"  # a misspelt filter is named
    assert api.get(f"{ORDERS}{paid.order_no}/").json()["pay_url"] is None  # paid: nothing to pay


def test_an_order_waiting_for_payment_is_cancelled_and_its_stock_returns(api, shop_a):
    made = api.post(ORDERS, {"product": shop_a.pk, "email": "b@example.com"}, format="json").json()
    cancelled = api.post(f"{ORDERS}{made['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert not CardSecret.objects.filter(status=SecretStatus.RESERVED).exists()
    again = api.post(f"{ORDERS}{made['id']}/cancel/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_cancellable"


def test_delivered_secrets_need_their_scope_and_every_read_is_audited(api, shop_a, merchant):
    order = OrderFactory(product=shop_a, state=OrderState.DELIVERED, delivered_kind="unique", quantity=2)
    codes = list(CardSecret.objects.filter(product=shop_a).order_by("pk")[:2])
    CardSecret.objects.filter(pk__in=[c.pk for c in codes]).update(order=order, status=SecretStatus.SOLD)
    url = f"{ORDERS}{order.order_no}/secrets/"
    read = api.get(url)
    assert read.status_code == 200 and read["Cache-Control"] == "no-store"
    assert read.json() == {"order": order.order_no, "state": "delivered", "secrets": [c.secret for c in codes]}
    assert not any(c.secret in api.get(f"{ORDERS}{order.order_no}/").content.decode() for c in codes)
    audit = AuditEvent.objects.get(action="order_secrets.api_read")
    assert audit.target == f"order:{order.order_no}" and audit.detail == {"count": 2}
    without = client_for(key_for(merchant, scopes=["read", "write"])).get(url)
    assert without.status_code == 403 and AuditEvent.objects.filter(action="order_secrets.api_read").count() == 1
