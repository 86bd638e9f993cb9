"""Product images served by the app itself (no web server or MEDIA folder needed): the bytes come from the
database, with an ETag so a browser revalidates with a 304 and the pages' ?v= URLs change when the image does."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import condition, require_GET

from cardshop import selectors

# A day: the pages link ?v=<digest>, so a replaced image is a new URL and never waits for this to run out.
IMAGE_MAX_AGE = 60 * 60 * 24


def _etag(request: HttpRequest, slug: str) -> str | None:
    return selectors.product_image_version(slug=slug)


def _serve(slug: str, *, thumb: bool) -> HttpResponse:
    found = selectors.product_image_bytes(slug=slug, thumb=thumb)
    if found is None:
        raise Http404
    data, _digest = found  # @condition sets the ETag from the same digest
    return HttpResponse(data, content_type="image/jpeg")


@require_GET
@cache_control(public=True, max_age=IMAGE_MAX_AGE)
@condition(etag_func=_etag)
def product_image(request: HttpRequest, slug: str) -> HttpResponse:
    return _serve(slug, thumb=False)


@require_GET
@cache_control(public=True, max_age=IMAGE_MAX_AGE)
@condition(etag_func=_etag)
def product_thumb(request: HttpRequest, slug: str) -> HttpResponse:
    return _serve(slug, thumb=True)
