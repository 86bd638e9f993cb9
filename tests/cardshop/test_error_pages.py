"""Errors: the shop's own 404 and 500 pages in its layout, with a pointer to order lookup, and a favicon.

The demo runs DEBUG=1, so each page is also checked with DEBUG on: a buyer never sees Django's technical page.
"""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

LOOKUP_LINK = 'id="lookup-link" href="/orders/lookup/"'
SHOP_LAYOUT = '<a class="brand" href="/">'


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


@pytest.mark.parametrize(
    "path", ["/p/no-such-product/", "/orders/NO-SUCH-ORDER/", "/orders/NO-SUCH-ORDER/pay/", "/nowhere/"]
)
def test_unknown_page_is_the_shops_404_in_english(client, debug, path):
    resp = client.get(path, HTTP_ACCEPT_LANGUAGE="en")
    html = resp.content.decode()
    assert resp.status_code == 404
    assert SHOP_LAYOUT in html and '<html lang="en">' in html
    assert 'id="error-404"' in html and "Page not found" in html
    assert LOOKUP_LINK in html and "Find my order" in html
    assert "Technical details" not in html and "Django tried these URL patterns" not in html


@pytest.mark.parametrize("path", ["/p/no-such-product/", "/orders/NO-SUCH-ORDER/", "/nowhere/"])
def test_unknown_page_is_the_shops_404_in_chinese(client, debug, path):
    html = client.get(path, HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()
    assert '<html lang="zh-hans">' in html and 'id="error-404"' in html
    assert LOOKUP_LINK in html and "订单查询" in html  # the lookup pointer, in Chinese
    assert "Find my order" not in html


def test_a_views_own_404_keeps_its_page(client, debug, product):
    # The lookup answers "no such order" with status 404 and its form: that is not replaced by the error page.
    resp = client.post("/orders/lookup/", {"order_no_or_email": "nobody@example.com", "query_password": "x"})
    assert resp.status_code == 404
    html = resp.content.decode()
    assert 'id="error-404"' not in html and 'name="query_password"' in html


def test_missing_slash_still_redirects(client, debug):
    resp = client.get("/orders/lookup")
    assert resp.status_code == 301 and resp["Location"] == "/orders/lookup/"


def test_admin_keeps_djangos_technical_404_under_debug(admin_client, settings):
    settings.DEBUG = True
    html = admin_client.get("/admin/nowhere/").content.decode()
    assert 'id="error-404"' not in html


def _broken_catalog(monkeypatch):
    from cardshop import selectors

    def boom():
        raise RuntimeError("database on fire")

    monkeypatch.setattr(selectors, "product_list_on_sale", boom)


@pytest.mark.parametrize("lang,lookup_text", [("en", "Find my order"), ("zh-CN", "订单查询")])
def test_a_view_raising_gives_the_shops_500(debug, monkeypatch, caplog, lang, lookup_text):
    _broken_catalog(monkeypatch)
    client = Client(raise_request_exception=False)
    resp = client.get("/", HTTP_ACCEPT_LANGUAGE=lang)
    html = resp.content.decode()
    assert resp.status_code == 500
    assert SHOP_LAYOUT in html and 'id="error-500"' in html
    assert LOOKUP_LINK in html and lookup_text in html
    assert "database on fire" not in html and "Traceback" not in html
    # The traceback still reaches the log for developers.
    assert any(r.exc_info and "database on fire" in str(r.exc_info[1]) for r in caplog.records)


def test_favicon(client):
    resp = client.get("/favicon.ico")
    assert resp.status_code == 200
    assert resp["Content-Type"] == "image/x-icon"
    assert resp.content[:4] == b"\x00\x00\x01\x00"  # the ICO header
    page = client.get("/orders/lookup/").content.decode()
    assert 'rel="icon" href="/favicon.ico"' in page and "cardshop/favicon.svg" in page
