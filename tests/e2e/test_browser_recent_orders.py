"""Issue 10: the lookup page lists the orders bought in this browser (kept in localStorage: order number,
product, date; no secret), as links that still need the order page's own access, with a "forget" button."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from cardshop.models import CardSecret, Order, OrderState
from tests.e2e.helpers import PHONE, assert_no_horizontal_scroll

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

KEY = "cardshop.recentOrders"
ALLOWED_KEYS = {"order_no", "product", "created"}


def _buy(page, public_url, product, email: str) -> Order:
    page.goto(f"{public_url}/p/{product.slug}/")
    page.fill("#id_email", email)
    page.fill("#id_query_password", "hunter22")
    page.click("#buy")
    expect(page).to_have_url(re.compile(r"/orders/[^/]+/pay/$"))
    page.wait_for_load_state("load")  # the URL changes before the page's script has stored the order
    return Order.objects.get(email=email)


def _stored(page) -> str | None:
    return page.evaluate(f"window.localStorage.getItem({KEY!r})")


@pytest.mark.parametrize("viewport,name", [({"width": 1280, "height": 800}, "desktop"), (PHONE, "phone")])
def test_lookup_lists_the_orders_bought_here_and_forgets_them(
    browser, public_url, epay_sim, product, artifacts_dir, viewport, name
):
    context = browser.new_context(viewport=viewport, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        # First order: bought and paid at the simulator's cashier, which sends the browser to the order page.
        first = _buy(page, public_url, product, "first@example.com")
        page.click("#pay-with-alipay")
        page.locator("#cashier-link").click()
        page.click("#pay")
        expect(page).to_have_url(f"{public_url}/orders/{first.order_no}/")
        first.refresh_from_db()
        assert first.state == OrderState.DELIVERED
        expect(page.locator("#secrets .code")).to_have_count(1)
        # Second order: left on its pay page, unpaid.
        second = _buy(page, public_url, product, "second@example.com")

        page.goto(f"{public_url}/orders/lookup/")
        box = page.locator("#recent-orders")
        expect(box).to_be_visible()
        expect(box.locator("h2")).to_have_text("Orders bought in this browser")
        items = box.locator("li")
        expect(items).to_have_count(2)  # the first order was seen on its pay page and its order page: once
        expect(items.nth(0).locator("a")).to_have_text(second.order_no)  # newest first
        expect(items.nth(1).locator("a")).to_have_text(first.order_no)
        expect(items.nth(1)).to_contain_text(product.name)

        # Only the number, the product and the date are kept: no code, email or password.
        stored = _stored(page)
        entries = json.loads(stored)
        assert [e["order_no"] for e in entries] == [second.order_no, first.order_no]
        assert all(set(e) == ALLOWED_KEYS for e in entries)
        assert all(e["product"] == product.name for e in entries)
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["created"]) for e in entries)
        for secret in [s.secret for s in CardSecret.objects.filter(order=first)] + [
            "hunter22",
            "first@example.com",
            "second@example.com",
        ]:
            assert secret not in stored
        assert_no_horizontal_scroll(page, f"recent-orders-{name}", artifacts_dir)

        # The link opens the order page (this browser was granted the order when it bought it).
        items.nth(1).locator("a").click()
        expect(page).to_have_url(f"{public_url}/orders/{first.order_no}/")
        expect(page.locator("#order-no")).to_have_text(first.order_no)
        expect(page.locator("#secrets .code")).to_have_count(1)

        # Forget: the list and the stored entries are gone, and stay gone after a reload.
        page.goto(f"{public_url}/orders/lookup/")
        page.click("#recent-orders-forget")
        expect(box).to_be_hidden()
        expect(box.locator("li")).to_have_count(0)
        assert _stored(page) is None
        page.reload()
        expect(page.locator("#recent-orders")).to_be_hidden()
    finally:
        context.close()
    assert not errors, errors


def test_a_listed_order_still_needs_the_order_pages_access(browser, public_url, product):
    """Another browser that somehow holds the list (copied storage, a shared profile) gets no order by it."""
    buyer = browser.new_context(locale="en-US")
    stranger = browser.new_context(locale="en-US")
    try:
        page = buyer.new_page()
        order = _buy(page, public_url, product, "mine@example.com")
        stored = _stored(page)
        assert [e["order_no"] for e in json.loads(stored)] == [order.order_no]

        other = stranger.new_page()
        other.goto(f"{public_url}/orders/lookup/")
        other.evaluate(f"s => window.localStorage.setItem({KEY!r}, s)", stored)
        other.reload()
        link = other.locator("#recent-orders li a")
        expect(link).to_have_text(order.order_no)
        with other.expect_response(f"{public_url}/orders/{order.order_no}/") as answer:
            link.click()
        assert answer.value.status == 404
    finally:
        buyer.close()
        stranger.close()


def test_stored_entries_are_shown_as_text_and_junk_is_dropped(browser, public_url, db):
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        page.goto(f"{public_url}/orders/lookup/")
        junk = [
            {
                "order_no": "2026120300000001",
                "product": "<img src=x onerror=alert(1)>",
                "created": "2026-12-03T01:02:03Z",
            },
            {"order_no": "../../admin/", "product": "x", "created": "2026-12-03T01:02:03Z"},
            {"order_no": 5, "product": "x", "created": "x"},
            "not an entry",
        ]
        page.evaluate(f"s => window.localStorage.setItem({KEY!r}, s)", json.dumps(junk))
        page.reload()
        items = page.locator("#recent-orders li")
        expect(items).to_have_count(1)
        expect(items.nth(0)).to_contain_text("<img src=x onerror=alert(1)>")  # as text, never as markup
        assert page.locator("#recent-orders img").count() == 0
        assert items.nth(0).locator("a").get_attribute("href") == "/orders/2026120300000001/"
    finally:
        context.close()


def test_the_list_keeps_the_ten_newest(browser, public_url, product):
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        page.goto(f"{public_url}/orders/lookup/")
        old = [
            {"order_no": f"2026010100000{i:03d}", "product": "old", "created": f"2026-01-01T00:00:{i:02d}Z"}
            for i in range(10)
        ]
        page.evaluate(f"s => window.localStorage.setItem({KEY!r}, s)", json.dumps(old))
        order = _buy(page, public_url, product, "ten@example.com")
        page.reload()  # seen twice: still one entry
        entries = json.loads(_stored(page))
        assert [e["order_no"] for e in entries] == [order.order_no] + [e["order_no"] for e in reversed(old)][:9]
    finally:
        context.close()


def test_a_refunded_order_shows_its_dates_in_the_buyers_zone(browser, public_url, epay_sim, product, artifacts_dir):
    """The refund block of the order page in a real browser far from the shop (New York): the local time with a
    zone name the browser gives, on a 390 px screen."""
    from cardshop.services.refunds import order_refund_request

    context = browser.new_context(viewport=PHONE, locale="en-US", timezone_id="America/New_York")
    page = context.new_page()
    try:
        order = _buy(page, public_url, product, "refund@example.com")
        page.click("#pay-with-alipay")
        page.locator("#cashier-link").click()
        page.click("#pay")
        expect(page).to_have_url(f"{public_url}/orders/{order.order_no}/")
        order_refund_request(order_no=order.order_no, actor="op")  # its after-commit submit settles it at once
        order.refresh_from_db()
        assert order.state == OrderState.REFUNDED
        page.reload()
        expect(page.locator("#refund .refund-amount")).to_have_text("¥9.90")
        done = page.locator("#refund .refund-done time")
        expected = page.evaluate(
            "iso => new Date(iso).toLocaleString(['en', 'en'], {year: 'numeric', month: '2-digit', day: '2-digit',"
            " hour: '2-digit', minute: '2-digit', timeZoneName: 'short'})",
            done.get_attribute("datetime"),
        )
        assert re.search(r"\b(EST|EDT)\b", expected)  # the buyer's own zone, as their browser names it
        expect(done).to_have_text(expected)
        expect(page.locator("#secrets")).to_have_count(0)
        assert_no_horizontal_scroll(page, "phone-en-order-refunded", artifacts_dir)
    finally:
        context.close()
