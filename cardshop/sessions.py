"""One session engine per audience: staff pages (the admin) keep server-side rows, so a logout or a
revoked login ends the session for good; buyers keep a signed cookie that holds only the orders they may
open (no database row per visitor, nothing to lose on a deploy).

The staff side is Django's own settings (SESSION_ENGINE = the database, SESSION_COOKIE_NAME/PATH), so the
test client's force_login and `manage.py clearsessions` work on it unchanged; the buyer side is
CARDSHOP_BUYER_SESSION_ENGINE under CARDSHOP_BUYER_SESSION_COOKIE_NAME.
"""

from __future__ import annotations

import time
from importlib import import_module

from django.conf import settings
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers
from django.utils.http import http_date


def is_staff_path(path: str) -> bool:
    return path.startswith(settings.CARDSHOP_STAFF_PATH_PREFIX)


class SplitSessionMiddleware(SessionMiddleware):
    """Django's SessionMiddleware (a subclass, so the admin's checks know it), with the engine and cookie
    chosen by the request's path."""

    def __init__(self, get_response):
        super().__init__(get_response)
        self.staff_store = import_module(settings.SESSION_ENGINE).SessionStore
        self.buyer_store = import_module(settings.CARDSHOP_BUYER_SESSION_ENGINE).SessionStore

    @staticmethod
    def _cookie(request: HttpRequest) -> tuple[str, str]:
        if is_staff_path(request.path_info):
            return settings.SESSION_COOKIE_NAME, settings.SESSION_COOKIE_PATH
        return settings.CARDSHOP_BUYER_SESSION_COOKIE_NAME, "/"

    def process_request(self, request: HttpRequest) -> None:
        name, _path = self._cookie(request)
        store = self.staff_store if is_staff_path(request.path_info) else self.buyer_store
        request.session = store(request.COOKIES.get(name))

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        # As django.contrib.sessions.middleware.SessionMiddleware.process_response, cookie name/path per side.
        try:
            accessed = request.session.accessed
            modified = request.session.modified
            empty = request.session.is_empty()
        except AttributeError:
            return response
        name, path = self._cookie(request)
        if name in request.COOKIES and empty:
            response.delete_cookie(
                name, path=path, domain=settings.SESSION_COOKIE_DOMAIN, samesite=settings.SESSION_COOKIE_SAMESITE
            )
            need_vary_cookie = True
        else:
            need_vary_cookie = accessed
            if (modified or settings.SESSION_SAVE_EVERY_REQUEST) and not empty:
                if request.session.get_expire_at_browser_close():
                    max_age = expires = None
                else:
                    max_age = request.session.get_expiry_age()
                    expires = http_date(time.time() + max_age)
                if response.status_code < 500:
                    try:
                        request.session.save()
                    except UpdateError:
                        raise SessionInterrupted(
                            "The request's session was deleted before the request completed."
                        ) from None
                    response.set_cookie(
                        name,
                        request.session.session_key,
                        max_age=max_age,
                        expires=expires,
                        domain=settings.SESSION_COOKIE_DOMAIN,
                        path=path,
                        secure=settings.SESSION_COOKIE_SECURE or None,
                        httponly=settings.SESSION_COOKIE_HTTPONLY or None,
                        samesite=settings.SESSION_COOKIE_SAMESITE,
                    )
                    need_vary_cookie = True
        if need_vary_cookie:
            patch_vary_headers(response, ("Cookie",))
        return response
