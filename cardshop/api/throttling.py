"""Requests per key: over the rate, 429 with Retry-After (seconds until a request is allowed again)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class PerKeyRate(SimpleRateThrottle):
    scope = "api_key"

    def get_rate(self) -> str:
        return settings.CARDSHOP_API_RATE  # read per request, so the setting can change without a restart

    def get_cache_key(self, request, view) -> str | None:
        key_id = getattr(request.user, "key_id", None)
        return None if key_id is None else f"api_rate:{key_id}"
