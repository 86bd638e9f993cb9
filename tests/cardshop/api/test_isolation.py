"""The cross-merchant walk, generated from the router: every endpoint that names an object, called with merchant A's
key on merchant B's object, answers 404 (as for an object that does not exist) and changes nothing of B's."""

from __future__ import annotations

import pytest

from cardshop.api.urls import router
from cardshop.models import CardSecret, Order, Product, WebhookEndpoint
from core.models import AuditEvent
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


OBJECT_OF_B = {
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
    return (b.name, b.price_minor, b.is_active, CardSecret.objects.filter(product=b).count(), orders, audits, hooks)


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


def test_the_walk_covers_every_endpoint_with_an_object():
    assert {basename for basename, *_ in CALLS} == set(OBJECT_OF_B) == {b for _p, _v, b in router.registry}
    assert len(CALLS) >= 13  # products 4, orders 4, webhook endpoints 4, events 1


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
