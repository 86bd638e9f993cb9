"""Order lookup needs the query password; contact alone never works; attempts are rate-limited."""

import pytest
from django.core.cache import cache

from cardshop.services.checkout import order_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_limits():
    cache.clear()
    yield
    cache.clear()


def make_order(product, email="owner@example.com", ip="10.0.0.1"):
    return order_create(product_id=product.pk, quantity=1, email=email, query_password="right-pass", buyer_ip=ip)


def lookup(client, needle, password, ip="10.5.5.5"):
    return client.post("/orders/lookup/", {"order_no_or_email": needle, "query_password": password}, REMOTE_ADDR=ip)


def test_lookup_by_order_number_needs_the_password(client, product):
    order = make_order(product)
    assert lookup(client, order.order_no, "wrong-pass").status_code == 404
    assert client.get(f"/orders/{order.order_no}/").status_code == 404
    resp = lookup(client, order.order_no, "right-pass")
    assert resp.status_code == 302 and resp["Location"] == f"/orders/{order.order_no}/"
    assert client.get(f"/orders/{order.order_no}/").status_code == 200


def test_lookup_by_email_lists_only_orders_with_that_password(client, product):
    a = make_order(product)
    b = order_create(
        product_id=product.pk, quantity=1, email="owner@example.com", query_password="other-pass", buyer_ip="10.0.0.2"
    )
    resp = lookup(client, "Owner@Example.com", "right-pass")
    assert resp.status_code == 302 and resp["Location"] == f"/orders/{a.order_no}/"
    assert client.get(f"/orders/{b.order_no}/").status_code == 404


def test_email_without_password_finds_nothing(client, product):
    make_order(product)
    resp = client.post("/orders/lookup/", {"order_no_or_email": "owner@example.com", "query_password": ""})
    assert resp.status_code == 200  # form error: password required
    assert "This field is required." in resp.content.decode()


def test_guessing_one_order_is_rate_limited_even_from_many_ips(client, product):
    order = make_order(product)
    for i in range(5):
        assert lookup(client, order.order_no, f"guess-{i}", ip=f"10.7.0.{i}").status_code == 404
    blocked = lookup(client, order.order_no, "right-pass", ip="10.7.1.1")
    assert blocked.status_code == 429
    assert client.get(f"/orders/{order.order_no}/").status_code == 404


def test_one_ip_is_rate_limited_across_orders(client, product, settings):
    settings.CARDSHOP_LOOKUP_RATE_IP = "3/h"
    for i in range(3):
        assert lookup(client, f"2026000000000000000{i}", "whatever1").status_code == 404
    assert lookup(client, "20260000000000000009", "whatever1").status_code == 429
    assert lookup(client, "20260000000000000009", "whatever1", ip="10.5.5.6").status_code == 404


def test_client_ip_ignores_forwarded_headers_unless_configured(rf, settings):
    from core.client_ip import client_ip

    forged = rf.get("/", REMOTE_ADDR="10.0.0.9", HTTP_X_FORWARDED_FOR="1.2.3.4' OR 1=1 --")
    assert client_ip(forged) == "10.0.0.9"
    settings.CARDSHOP_CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    assert client_ip(rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_REAL_IP="203.0.113.7")) == "203.0.113.7"
    assert client_ip(rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_REAL_IP="not-an-ip")) == ""
