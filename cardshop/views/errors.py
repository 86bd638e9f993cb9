"""The shop's own 404 and 500 pages, and the middleware that shows them to buyers even when DEBUG is on.

Django shows its technical pages (settings, traceback) instead of handler404/handler500 under DEBUG; the demo
runs DEBUG=1, so a buyer would see them. Under DEBUG the middleware renders the shop's pages for every path
except the admin (operators keep Django's traceback there) and provider notify endpoints (machine callers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotFound, HttpResponseServerError, JsonResponse
from django.template import loader
from django.views.decorators.csrf import requires_csrf_token

from cardshop.api.errors import error_body

log = logging.getLogger("django.request")

TECHNICAL_PREFIXES = ("/admin/", "/notify/")
API_PREFIX = "/api/"  # machine callers get the API's JSON error object, not a page

# A page that cannot fail: used when even the shop's 500 template cannot render (database down, template error).
FALLBACK_500 = (
    '<!doctype html><html><head><meta charset="utf-8"><title>Server error</title></head>'
    '<body><h1>Something went wrong</h1><p><a href="/orders/lookup/">Find my order</a></p></body></html>'
)


@requires_csrf_token
def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return JsonResponse(error_body(404, "resource_missing", "No such endpoint."), status=404)
    body = loader.render_to_string("404.html", {"request_path": request.path}, request)
    return HttpResponseNotFound(body)


@requires_csrf_token
def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        return JsonResponse(error_body(500, "server_error", "Something went wrong on our side."), status=500)
    try:
        body = loader.render_to_string("500.html", {}, request)
    except Exception:  # the error page must never raise a second error
        log.exception("the 500 page failed to render")
        body = FALLBACK_500
    return HttpResponseServerError(body)


def _for_buyer(request: HttpRequest) -> bool:
    return settings.DEBUG and not request.path.startswith(TECHNICAL_PREFIXES)


class BuyerErrorPagesMiddleware:
    """Under DEBUG, buyers get the shop's 404/500 pages instead of Django's technical ones (see module doc)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # No resolver match: the URL matched no pattern, and Django answered with its technical 404.
        # A view's own 404 (the lookup's "no such order" form) has a match and is left as it is.
        if response.status_code == 404 and getattr(request, "resolver_match", None) is None and _for_buyer(request):
            return page_not_found(request)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not _for_buyer(request):
            return None
        if isinstance(exception, Http404):
            return page_not_found(request, exception)
        # Keep the traceback for developers in the log, as Django's own handler would.
        log.error("Internal Server Error: %s", request.path, exc_info=exception, extra={"request": request})
        return server_error(request)
