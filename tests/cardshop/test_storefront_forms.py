"""Form errors in plain words, limits shown before the buyer fails them, the query password kept, lockout time."""

from __future__ import annotations

import re

import pytest
from django.core.cache import cache

from cardshop.models import Order
from tests.cardshop.helpers import buy
from tests.conftest import make_product

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def ranged(merchant, epay_account):
    return make_product(merchant, secrets_count=7, min_quantity=2, max_quantity=4)


def _helptext_after(html: str, field_id: str) -> str:
    m = re.search(rf'id="{field_id}"[^>]*>\s*<span class="helptext">([^<]*)</span>', html)
    assert m, f"no help text next to {field_id}"
    return m.group(1)


def test_quantity_range_and_stock_are_shown_next_to_the_field(client, ranged):
    html = client.get(f"/p/{ranged.slug}/").content.decode()
    assert _helptext_after(html, "id_quantity") == "2 to 4 per order; 7 in stock."
    assert 'min="2"' in html and 'max="4"' in html


def test_query_password_rule_is_shown_as_help_text(client, ranged):
    html = client.get(f"/p/{ranged.slug}/").content.decode()
    assert _helptext_after(html, "id_query_password").startswith("6 to 64 characters.")
    assert 'minlength="6"' in html and 'maxlength="64"' in html


def _checkout(client, product, **data):
    return client.post(
        f"/p/{product.slug}/",
        {"quantity": 2, "email": "buyer@example.com", "query_password": "secret1", **data},
        REMOTE_ADDR="10.8.0.1",
    )


def test_quantity_out_of_range_says_the_range_next_to_the_field(client, ranged):
    page = _checkout(client, ranged, quantity=9)
    assert page.status_code == 400
    html = page.content.decode()
    assert "Quantity must be between 2 and 4." in html
    assert "Ensure this value" not in html
    assert Order.objects.count() == 0


def test_short_query_password_is_said_plainly_and_the_other_inputs_are_kept(client, ranged):
    page = _checkout(client, ranged, query_password="abc")
    html = page.content.decode()
    assert "The query password needs at least 6 characters; you typed 3." in html
    assert 'value="buyer@example.com"' in html


def test_query_password_is_kept_on_a_failed_checkout(client, ranged):
    page = _checkout(client, ranged, email="not-an-email", query_password="my-secret-9")
    assert page.status_code == 400
    html = page.content.decode()
    assert "This does not look like an email address" in html
    assert re.search(r'<input type="password" name="query_password" value="my-secret-9"', html)


def test_query_password_is_kept_on_a_failed_lookup(client, ranged):
    resp = client.post("/orders/lookup/", {"order_no_or_email": "nobody@example.com", "query_password": "typed-pw"})
    assert resp.status_code == 404
    html = resp.content.decode()
    assert re.search(r'<input type="password" name="query_password" value="typed-pw"', html)
    assert _helptext_after(html, "id_query_password") == "The password you chose at checkout (6 to 64 characters)."


def test_lookup_lockout_says_how_long_to_wait(client, ranged, settings, monkeypatch):
    settings.CARDSHOP_LOOKUP_RATE_ORDER = "2/15m"
    order = buy(ranged, qty=2)
    # Freeze the clock django-ratelimit reads (only its own), at a known offset into this key's 15-minute window.
    import time as real_time
    import zlib
    from types import SimpleNamespace

    from django_ratelimit import core as rl

    period = 900
    jitter = zlib.crc32(order.order_no.encode()) % period
    base = (int(real_time.time()) // period) * period * 10  # far from now, on a period boundary
    now = base + jitter + 1  # one second after this key's window began: 899 s left
    monkeypatch.setattr(rl, "time", SimpleNamespace(time=lambda: now))

    def attempt():
        return client.post("/orders/lookup/", {"order_no_or_email": order.order_no, "query_password": "wrong-guess"})

    assert attempt().status_code == 404
    assert attempt().status_code == 404
    blocked = attempt()
    assert blocked.status_code == 429
    assert "Too many attempts: try again in 15 minutes." in blocked.content.decode()

    now += period - 30 - 1  # 30 seconds before the window ends
    later = attempt()
    assert later.status_code == 429
    assert "Too many attempts: try again in 30 seconds." in later.content.decode()
