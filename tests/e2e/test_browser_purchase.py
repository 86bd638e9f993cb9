"""A buyer in a real browser: catalog -> product -> checkout -> QR pay page -> simulator cashier -> delivered secret."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from cardshop.models import CardSecret, Order, OrderState
from payments.models import Payment

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_buyer_buys_a_card_in_the_browser(page, public_url, epay_account, epay_sim, product, artifacts_dir):
    base = public_url

    # Catalog -> product page.
    page.goto(base + "/")
    page.get_by_role("link", name=product.name).click()
    expect(page).to_have_url(f"{base}/p/{product.slug}/")

    # Checkout: one item, email, query password, Buy.
    page.fill("#id_quantity", "1")
    page.fill("#id_email", "buyer@example.com")
    page.fill("#id_query_password", "hunter22")
    page.click("#buy")
    expect(page).to_have_url(re.compile(r"/orders/[^/]+/pay/$"))
    order = Order.objects.get()
    assert page.url == f"{base}/orders/{order.order_no}/pay/"
    expect(page.locator("#order-no")).to_have_text(order.order_no)

    # The buyer picks the payment app; routing picks the channel behind it.
    page.click("#pay-with-alipay")
    expect(page).to_have_url(f"{base}/orders/{order.order_no}/pay/?method=alipay")

    # The pay page shows a real, decoded QR image and the simulator's cashier link.
    qr = page.locator("img#qr")
    expect(qr).to_be_visible()
    payment = Payment.objects.get(reference=order.order_no)
    assert qr.get_attribute("src") == f"/orders/{order.order_no}/pay/qr.png?p={payment.out_trade_no}"
    # The QR is its own request: wait until the browser has decoded it, then check it is a real image.
    page.wait_for_function(
        "() => { const i = document.querySelector('img#qr'); return i.complete && i.naturalWidth > 0; }"
    )
    assert qr.evaluate("img => img.naturalWidth") > 100
    cashier = page.locator("#cashier-link")
    expect(cashier).to_be_visible()
    assert cashier.get_attribute("href").startswith(epay_sim.base_url + "/cashier/")

    # Follow the link, pay at the cashier; the simulator notifies the shop and sends the browser back.
    cashier.click()
    expect(page).to_have_url(re.compile(r"/cashier/\d+$"))
    expect(page.locator("#out_trade_no")).not_to_be_empty()
    page.click("#pay")
    expect(page).to_have_url(re.compile(rf"^{re.escape(base)}/orders/{order.order_no}/"))

    # The order page shows the delivered secret: exactly the one sold to this order.
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    sold = CardSecret.objects.get(order=order)
    expect(page.locator("#order-state")).to_have_class(re.compile(r"\bstate-delivered\b"))
    codes = page.locator("#secrets code")
    expect(codes).to_have_count(1)
    assert codes.inner_text().strip() == sold.secret

    page.screenshot(path=str(artifacts_dir / "delivered-order.png"), full_page=True)


def test_language_switcher_switches_to_simplified_chinese_and_back(page, live_server):
    page.goto(live_server.url + "/")
    assert page.evaluate("document.documentElement.lang") == "en"

    language = page.locator('select[name="language"]')
    with page.expect_navigation():
        language.select_option("zh-hans")
    assert page.evaluate("document.documentElement.lang") == "zh-hans"
    expect(language).to_have_value("zh-hans")

    with page.expect_navigation():
        language.select_option("en")
    assert page.evaluate("document.documentElement.lang") == "en"
