"""Liveness and readiness, and the shared cache that rate limits rely on across web processes."""

import pytest
from django.core.cache import caches

pytestmark = pytest.mark.django_db


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok", "cache": "ok"}


def test_lookup_limits_are_shared_through_redis(require_redis, client, product, settings):
    # Counters live in Redis, where every gunicorn process sees the same ones.
    import redis

    from tests.cardshop.test_lookup import lookup, make_order

    caches["default"].clear()
    order = make_order(product)
    for i in range(5):
        lookup(client, order.order_no, f"guess-{i}")
    counters = redis.Redis.from_url(settings.REDIS_URL).keys("*rl:*")
    assert len(counters) == 2  # one per IP, one per order
    assert lookup(client, order.order_no, "right-pass", ip="10.9.9.9").status_code == 429
    caches["default"].clear()
