"""A buyer on a 390 px phone and a 1400 px desktop, in English and Chinese: no page wider than the screen; copy
and download codes; an expired order offers to buy again."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from cardshop.models import CardSecret, Order, OrderState
from tests.e2e.helpers import SCREEN_IDS, SCREENS, assert_no_horizontal_scroll, screen_name

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# What the order page says in each language: a Chinese page proves the catalog is used, not only <html lang>.
ORDER_PAGE = {
    "en": {"copy": "Copy", "copied": "Copied", "download": "Download all as .txt", "buy_again": "Buy again",
           "expired": "expired because it was not paid"},
    "zh-hans": {"copy": "复制", "copied": "已复制", "download": "全部下载为 .txt", "buy_again": "重新购买",
                "expired": "已过期"},
}  # fmt: skip


@pytest.mark.parametrize("viewport,locale,lang", SCREENS, ids=SCREEN_IDS)
def test_buyer_pays_copies_and_downloads(browser, public_url, epay_sim, product, artifacts_dir, viewport, locale, lang):
    words, screen = ORDER_PAGE[lang], screen_name(viewport, lang)
    context = browser.new_context(viewport=viewport, locale=locale)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=public_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{public_url}/p/{product.slug}/")
        assert page.evaluate("document.documentElement.lang") == lang
        assert_no_horizontal_scroll(page, f"codes-{screen}-product", artifacts_dir)

        page.fill("#id_quantity", "2")
        page.fill("#id_email", "phone@example.com")
        page.fill("#id_query_password", "hunter22")
        page.click("#buy")
        expect(page).to_have_url(re.compile(r"/orders/[^/]+/pay/$"))
        order = Order.objects.get()
        assert_no_horizontal_scroll(page, f"codes-{screen}-pay-methods", artifacts_dir)

        page.click("#pay-with-alipay")
        page.wait_for_function("() => { const i = document.querySelector('img#qr'); return i && i.complete; }")
        assert_no_horizontal_scroll(page, f"codes-{screen}-pay-qr", artifacts_dir)

        # The pending order page: its deadline, and the long order number wrapped.
        page.goto(f"{public_url}/orders/{order.order_no}/")
        expect(page.locator("#countdown")).to_have_text(re.compile(r"^\d\d:\d\d$"))
        assert_no_horizontal_scroll(page, f"codes-{screen}-order-pending", artifacts_dir)

        # Pay at the simulator's cashier; it sends the browser back to the delivered order.
        page.goto(f"{public_url}/orders/{order.order_no}/pay/")
        page.locator("#cashier-link").click()
        page.click("#pay")
        expect(page).to_have_url(re.compile(rf"/orders/{order.order_no}/$"))
        order.refresh_from_db()
        assert order.state == OrderState.DELIVERED
        sold = [s.secret for s in CardSecret.objects.filter(order=order).order_by("pk")]
        expect(page.locator("#secrets .code")).to_have_count(2)
        assert_no_horizontal_scroll(page, f"codes-{screen}-order-delivered", artifacts_dir)

        # Copy the second code: it lands on the clipboard exactly, and the button says so.
        copy = page.locator('button[data-copy="code-2"]')
        expect(copy).to_have_text(words["copy"])
        copy.click()
        page.wait_for_function(f"() => navigator.clipboard.readText().then(t => t === {sold[1]!r})")
        expect(copy).to_have_text(words["copied"])

        # Download all codes: the file holds exactly the delivered codes.
        download_link = page.locator("#download-codes")
        expect(download_link).to_have_text(words["download"])
        with page.expect_download() as info:
            download_link.click()
        download = info.value
        assert download.suggested_filename == f"order-{order.order_no}.txt"
        with open(download.path(), encoding="utf-8") as f:
            assert f.read() == "\n".join(sold) + "\n"
    finally:
        context.close()
    assert not errors, errors


@pytest.mark.parametrize("viewport,locale,lang", SCREENS, ids=SCREEN_IDS)
def test_expired_order_offers_buy_again(browser, public_url, product, artifacts_dir, viewport, locale, lang):
    from datetime import timedelta

    import time_machine

    from cardshop.services.orders import orders_expire_due

    words, screen = ORDER_PAGE[lang], screen_name(viewport, lang)
    context = browser.new_context(viewport=viewport, locale=locale)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
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
        assert page.evaluate("document.documentElement.lang") == lang
        expect(page.locator("#order-ended")).to_contain_text(words["expired"])
        buy_again = page.locator("#buy-again")
        expect(buy_again).to_have_text(words["buy_again"])
        assert_no_horizontal_scroll(page, f"expired-{screen}-order", artifacts_dir)
        buy_again.click()
        expect(page).to_have_url(f"{public_url}/p/{product.slug}/")
        expect(page.locator("#buy")).to_be_visible()
        assert_no_horizontal_scroll(page, f"expired-{screen}-buy-again", artifacts_dir)
    finally:
        context.close()
    assert not errors, errors
