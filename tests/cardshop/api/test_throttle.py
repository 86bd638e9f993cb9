"""Requests per key: over the rate a key gets 429 with Retry-After; another key is not slowed by it."""

from __future__ import annotations

from django.core.cache import cache

from cardshop.models.merchant_api import ApiKey
from tests.cardshop.api.conftest import client_for, key_for


def test_over_the_rate_a_key_gets_429_with_retry_after(settings, merchant, shop_a):
    settings.CARDSHOP_API_RATE = "2/m"
    busy, calm = client_for(key_for(merchant)), client_for(key_for(merchant))
    cache.delete_many([f"api_rate:{pk}" for pk in ApiKey.objects.values_list("pk", flat=True)])  # ids repeat on SQLite
    assert [busy.get("/api/v1/products/").status_code for _ in range(2)] == [200, 200]
    third = busy.get("/api/v1/products/")
    assert third.status_code == 429 and 0 < int(third["Retry-After"]) <= 60
    assert third.json()["error"]["type"] == "rate_limit_error"
    assert calm.get("/api/v1/products/").status_code == 200
