"""The cross-merchant walk, generated from the router: every endpoint that names an object, called with merchant A's
key on merchant B's object, answers 404 (as for an object that does not exist) and changes nothing of B's; every
list, read with A's key, holds none of B's objects."""

from __future__ import annotations

import pytest

from cardshop.api.urls import router
from cardshop.models import CardSecret, Coupon, Order, Product, WebhookEndpoint
from core.models import AuditEvent
from payments.models import ChannelAccount
from settlement.models import LedgerEntry, Payout
from tests.cardshop.api.conftest import money_for
from tests.factories.cardshop import OrderFactory


# One object of merchant B per registered endpoint, and a snapshot of what B has (to show nothing changed).
def endpoint_of(b: Product) -> int:
    from cardshop.models import WebhookEndpoint

    endpoint = WebhookEndpoint.objects.filter(merchant=b.merchant).first()
    return (
        endpoint or WebhookEndpoint.objects.create(merchant=b.merchant, url="https://b.example/h", secret="whsec_AAAA")
    ).pk


def event_of(b: Product) -> str:
    from cardshop.models import WebhookEvent

    event = WebhookEvent.objects.filter(merchant=b.merchant).first()
    return (
        event or WebhookEvent.objects.create(merchant=b.merchant, event_id="evt_0b", type="order.paid", payload={})
    ).event_id


def payout_of(b: Product) -> str:
    payout = Payout.objects.filter(party_kind="merchant", party_id=b.merchant_id).first()
    return (payout or money_for(b.merchant, ChannelAccount.objects.get(code="epay"))).payout_no


def coupon_of(b: Product) -> int:
    from cardshop.models import Coupon

    coupon = Coupon.objects.filter(merchant=b.merchant).first()
    return (coupon or Coupon.objects.create(merchant=b.merchant, code="BONLY", kind="percent", percent_off=10)).pk


OBJECT_OF_B = {
    "api-coupon": coupon_of,
    "api-payout": payout_of,
    "api-webhook-endpoint": endpoint_of,
    "api-event": event_of,
    "api-product": lambda b: b.pk,
    "api-order": lambda b: (Order.objects.filter(product=b).first() or OrderFactory(product=b)).order_no,
}


def snapshot_of_b(b: Product) -> tuple:
    b.refresh_from_db()
    orders = sorted(Order.objects.filter(product=b).values_list("order_no", "state"))
    audits = AuditEvent.objects.count()  # nothing made, changed or read on B's behalf
    hooks = sorted(WebhookEndpoint.objects.filter(merchant=b.merchant).values_list("pk", "is_active", "secret"))
    coupons = sorted(Coupon.objects.filter(merchant=b.merchant).values_list("pk", "is_active", "uses"))
    stock = CardSecret.objects.filter(product=b).count()
    return (b.name, b.price_minor, b.is_active, stock, orders, audits, hooks, coupons)


def detail_calls():
    for prefix, viewset, basename in router.registry:
        for route in router.get_routes(viewset):
            if not route.detail:
                continue
            for method, action in route.mapping.items():
                if hasattr(viewset, action):
                    suffix = route.url.split("{lookup}")[1].replace("{trailing_slash}", "/").rstrip("$")
                    yield basename, prefix, suffix, method


CALLS = sorted(set(detail_calls()))


def list_calls():
    for prefix, viewset, basename in router.registry:
        if hasattr(viewset, "list"):
            yield basename, prefix


LISTS = sorted(list_calls())


def test_the_walk_covers_every_endpoint_with_an_object():
    assert {basename for basename, *_ in CALLS} == set(OBJECT_OF_B)
    assert {basename for basename, _prefix in LISTS} == set(IDS_OF_B)
    assert set(OBJECT_OF_B) | set(IDS_OF_B) == {b for _p, _v, b in router.registry}
    assert len(CALLS) >= 16  # products 4, orders 4, webhook endpoints 4, events 1, payouts 1, coupons 2


# What each list would show of merchant B's (by the field that tells rows apart), B having one of each.
def b_has_everything(b: Product) -> None:
    for make in OBJECT_OF_B.values():
        make(b)


IDS_OF_B = {
    "api-coupon": lambda b: {coupon_of(b)},
    "api-product": lambda b: {b.pk},
    "api-order": lambda b: set(Order.objects.filter(product=b).values_list("order_no", flat=True)),
    "api-webhook-endpoint": lambda b: set(
        WebhookEndpoint.objects.filter(merchant=b.merchant).values_list("pk", flat=True)
    ),
    "api-event": lambda b: {event_of(b)},
    "api-payout": lambda b: set(
        Payout.objects.filter(party_kind="merchant", party_id=b.merchant_id).values_list("payout_no", flat=True)
    ),
    "api-balance": lambda b: {"CNY"},  # B has money in CNY; A, none
    "api-balance-transaction": lambda b: set(
        LedgerEntry.objects.filter(account__party_kind="merchant", account__party_id=b.merchant_id).values_list(
            "pk", flat=True
        )
    ),
}


@pytest.mark.parametrize(("basename", "prefix"), LISTS)
def test_merchant_as_lists_hold_nothing_of_merchant_bs(api, shop_a, shop_b, basename, prefix):
    b_has_everything(shop_b)
    of_b = IDS_OF_B[basename](shop_b)
    assert of_b  # the walk is only worth something if B has some
    rows = api.get(f"/api/v1/{prefix}/").json()["data"]
    shown = {row.get("id", row.get("currency")) for row in rows}
    assert not shown & of_b, (prefix, shown & of_b)


@pytest.mark.parametrize(("basename", "prefix", "suffix", "method"), CALLS)
def test_merchant_as_key_on_merchant_bs_object_is_not_found(api, shop_a, shop_b, basename, prefix, suffix, method):
    url = f"/api/v1/{prefix}/{OBJECT_OF_B[basename](shop_b)}{suffix}"
    before = snapshot_of_b(shop_b)
    body = {"name": "taken over", "codes": "STOLEN-1", "price": {"amount_minor": 1, "currency": "CNY"}}
    answer = getattr(api, method)(url, body, format="json") if method != "get" else api.get(url)
    assert answer.status_code == 404, (method, url)
    assert answer.json()["error"] == {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "message": "No such object.",
        "param": None,
    }
    assert snapshot_of_b(shop_b) == before
