"""The device cookie risk counts by: a random id the storefront gives each browser once (two years, HttpOnly).
It proves nothing (a script can drop it), so it is one signal among many, never a key to anything."""

from __future__ import annotations

import re
import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse

DEVICE_COOKIE = "cs_device"
DEVICE_MAX_AGE = 2 * 365 * 24 * 3600
_DEVICE_RE = re.compile(r"[A-Za-z0-9_-]{22}")
# Not the buyer's browser: provider callbacks, the back office, probes.
_NOT_STOREFRONT = ("/notify/", "/admin/", "/health", "/static/")


def device_of(request: HttpRequest) -> str:
    return getattr(request, "device_id", "")


class DeviceCookieMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        seen = request.COOKIES.get(DEVICE_COOKIE, "")
        storefront = not request.path.startswith(_NOT_STOREFRONT)
        fresh = "" if _DEVICE_RE.fullmatch(seen) or not storefront else secrets.token_urlsafe(16)
        request.device_id = fresh or (seen if storefront else "")
        response = self.get_response(request)
        if fresh:
            response.set_cookie(
                DEVICE_COOKIE,
                fresh,
                max_age=DEVICE_MAX_AGE,
                httponly=True,
                samesite="Lax",
                secure=settings.SESSION_COOKIE_SECURE,
            )
        return response
