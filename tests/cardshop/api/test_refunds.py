"""Refunds through the API (scope `refunds`): in full, through the channel that took the money, once."""

from __future__ import annotations

from cardshop.models import Order
from payments.models import Refund, RefundStatus
from tests.cardshop.api.conftest import client_for, key_for, paid_via_api

ORDERS = "/api/v1/orders/"


def test_a_delivered_order_is_refunded_once(
    api, shop_a, epay_sim, client, settings, django_capture_on_commit_callbacks
):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    order_no = paid_via_api(api, shop_a, epay_sim, client)
    assert api.get(f"{ORDERS}{order_no}/").json()["state"] == "delivered"
    with django_capture_on_commit_callbacks(execute=True):
        asked = api.post(f"{ORDERS}{order_no}/refund/", {"reason": "buyer asked"}, format="json")
    assert asked.status_code == 202
    refund = Refund.objects.get()
    assert asked.json() == {
        "id": refund.refund_no,
        "order": order_no,
        "status": "requested",
        "amount": {"amount_minor": shop_a.price_minor, "currency": "CNY"},
        "reason": "buyer asked",
    }
    assert refund.status == RefundStatus.SUCCEEDED  # the channel confirmed it after commit
    order = api.get(f"{ORDERS}{order_no}/").json()
    assert order["state"] == "refunded" and order["refunded_at"]
    again = api.post(f"{ORDERS}{order_no}/refund/", {}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_refundable"
    assert Refund.objects.count() == 1


def test_a_refund_needs_its_scope_and_a_paid_order(api, shop_a, merchant):
    order_no = api.post(ORDERS, {"product": shop_a.pk, "email": "b@example.com"}, format="json").json()["id"]
    without = client_for(key_for(merchant, scopes=["read", "write"])).post(
        f"{ORDERS}{order_no}/refund/", {}, format="json"
    )
    assert without.status_code == 403
    unpaid = api.post(f"{ORDERS}{order_no}/refund/", {}, format="json")
    assert unpaid.status_code == 409 and unpaid.json()["error"]["code"] == "not_refundable"
    assert not Refund.objects.exists() and Order.objects.get().state == "pending"
