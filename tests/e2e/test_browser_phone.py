"""A buyer on a 390 px phone, in English and Chinese: no page wider than the screen; copy and download codes."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from cardshop.models import CardSecret, Order, OrderState

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# A plain 390 px viewport: with is_mobile Chromium zooms out to fit wide content, hiding the overflow we test.
PHONE = {"width": 390, "height": 844}


def assert_no_horizontal_scroll(page, name: str, artifacts_dir) -> None:
    page.screenshot(path=str(artifacts_dir / f"{name}.png"), full_page=True)
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{name}: the page is {width[0]} px wide on a {width[1]} px screen"


@pytest.mark.parametrize("locale,lang", [("en-US", "en"), ("zh-CN", "zh-hans")])
def test_phone_buyer_pays_copies_and_downloads(browser, public_url, epay_sim, product, artifacts_dir, locale, lang):
    context = browser.new_context(viewport=PHONE, locale=locale)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=public_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{public_url}/p/{product.slug}/")
        assert page.evaluate("document.documentElement.lang") == lang
        assert_no_horizontal_scroll(page, f"phone-{lang}-product", artifacts_dir)

        page.fill("#id_quantity", "2")
        page.fill("#id_email", "phone@example.com")
        page.fill("#id_query_password", "hunter22")
        page.click("#buy")
        expect(page).to_have_url(re.compile(r"/orders/[^/]+/pay/$"))
        order = Order.objects.get()
        assert_no_horizontal_scroll(page, f"phone-{lang}-pay-methods", artifacts_dir)

        page.click("#pay-with-alipay")
        page.wait_for_function("() => { const i = document.querySelector('img#qr'); return i && i.complete; }")
        assert_no_horizontal_scroll(page, f"phone-{lang}-pay-qr", artifacts_dir)

        # The pending order page: its deadline, and the long order number wrapped.
        page.goto(f"{public_url}/orders/{order.order_no}/")
        expect(page.locator("#countdown")).to_have_text(re.compile(r"^\d\d:\d\d$"))
        assert_no_horizontal_scroll(page, f"phone-{lang}-order-pending", artifacts_dir)

        # Pay at the simulator's cashier; it sends the browser back to the delivered order.
        page.goto(f"{public_url}/orders/{order.order_no}/pay/")
        page.locator("#cashier-link").click()
        page.click("#pay")
        expect(page).to_have_url(re.compile(rf"/orders/{order.order_no}/$"))
        order.refresh_from_db()
        assert order.state == OrderState.DELIVERED
        sold = [s.secret for s in CardSecret.objects.filter(order=order).order_by("pk")]
        expect(page.locator("#secrets .code")).to_have_count(2)
        assert_no_horizontal_scroll(page, f"phone-{lang}-order-delivered", artifacts_dir)

        # Copy the second code: it lands on the clipboard exactly.
        page.locator('button[data-copy="code-2"]').click()
        page.wait_for_function(f"() => navigator.clipboard.readText().then(t => t === {sold[1]!r})")

        # Download all codes: the file holds exactly the delivered codes.
        with page.expect_download() as info:
            page.click("#download-codes")
        download = info.value
        assert download.suggested_filename == f"order-{order.order_no}.txt"
        with open(download.path(), encoding="utf-8") as f:
            assert f.read() == "\n".join(sold) + "\n"
    finally:
        context.close()
    assert not errors, errors


def test_phone_expired_order_offers_buy_again(browser, public_url, product, artifacts_dir):
    from datetime import timedelta

    import time_machine

    from cardshop.services.orders import orders_expire_due

    context = browser.new_context(viewport=PHONE, locale="en-US")
    page = context.new_page()
    try:
        page.goto(f"{public_url}/p/{product.slug}/")
        page.fill("#id_email", "late@example.com")
        page.fill("#id_query_password", "hunter22")
        page.click("#buy")
        expect(page).to_have_url(re.compile(r"/orders/[^/]+/pay/$"))
        order = Order.objects.get()
        with time_machine.travel(order.expires_at + timedelta(seconds=1), tick=False):
            assert orders_expire_due() == 1

        page.goto(f"{public_url}/orders/{order.order_no}/")
        expect(page.locator("#order-ended")).to_contain_text("expired because it was not paid")
        assert_no_horizontal_scroll(page, "phone-en-order-expired", artifacts_dir)
        page.click("#buy-again")
        expect(page).to_have_url(f"{public_url}/p/{product.slug}/")
    finally:
        context.close()
