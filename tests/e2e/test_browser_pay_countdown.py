"""Pay page in a real browser: the reservation's end counts down and shows in the buyer's own time zone."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from cardshop.models import Order

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_pay_page_counts_down_in_the_buyers_time_zone(browser, public_url, product, artifacts_dir):
    # A buyer in New York, far from the shop's Asia/Shanghai: the deadline must read in New York time.
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="en-US", timezone_id="America/New_York"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{public_url}/p/{product.slug}/")
        page.fill("#id_quantity", "2")
        page.fill("#id_email", "tz@example.com")
        page.fill("#id_query_password", "hunter22")
        page.click("#buy")
        expect(page).to_have_url(re.compile(r"/orders/[^/]+/pay/$"))
        order = Order.objects.get()

        expect(page.locator("#order-qty")).to_have_text("2")
        expect(page.locator("#order-amount")).to_have_text(order.amount_label)

        countdown = page.locator("#countdown")
        expect(countdown).to_have_text(re.compile(r"^\d\d:\d\d$"))
        first = countdown.inner_text()
        # The text changes within a couple of seconds: it is ticking in the browser, not a rendered constant.
        page.wait_for_function(f"() => document.getElementById('countdown').textContent !== {first!r}", timeout=3000)
        minutes, seconds = map(int, countdown.inner_text().split(":"))
        left = order.expires_at.timestamp() - page.evaluate("Date.now()") / 1000
        assert abs(minutes * 60 + seconds - left) <= 2

        local = order.expires_at.astimezone(ZoneInfo("America/New_York"))
        at = page.locator("#deadline-at").inner_text()
        assert local.strftime("%I:%M %p") in at and re.search(r"\bE[SD]T\b", at), at
        page.screenshot(path=str(artifacts_dir / "pay-countdown.png"), full_page=True)
    finally:
        context.close()
    assert not errors, errors
