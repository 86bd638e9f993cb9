"""A buyer finds a product by category and search, picks the payment method on the product page and pays with it;
on a 1400 px desktop and a 390 px phone, in English and Chinese, no page is wider than the screen."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from cardshop.models import Category, Order, OrderState, ShopAnnouncement
from cardshop.services.images import product_image_prepare, product_image_set
from payments.models import Payment
from tests.conftest import make_product
from tests.e2e.helpers import DESKTOP, PHONE, assert_no_horizontal_scroll

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _picture() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (900, 600), (30, 90, 160)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "viewport,locale,lang",
    [(DESKTOP, "en-US", "en"), (PHONE, "zh-CN", "zh-hans")],
    ids=["1400px-en", "390px-zh"],
)
def test_buyer_searches_picks_a_method_on_the_product_page_and_pays_with_it(
    browser, public_url, merchant, epay_account, epay_sim, artifacts_dir, viewport, locale, lang
):
    gifts = Category.objects.create(name="Gift cards · 礼品卡", slug="gift-cards")
    keys = Category.objects.create(name="Software · 软件", slug="software", sort_order=1)
    steam = make_product(merchant, name="Steam Wallet 10", category=gifts, secrets_count=3, price_minor=990)
    make_product(merchant, name="Xbox Live Gold", category=gifts, secrets_count=3)
    make_product(merchant, name="Office licence", category=keys, secrets_count=3)
    product_image_set(product_id=steam.pk, image=product_image_prepare(data=_picture()))
    ShopAnnouncement.objects.update_or_create(
        pk=ShopAnnouncement.SINGLETON_PK, defaults={"text": "Codes arrive at once · 付款后自动发货", "is_active": True}
    )

    context = browser.new_context(viewport=viewport, locale=locale)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(public_url + "/")
        assert page.evaluate("document.documentElement.lang") == lang
        expect(page.locator("#announcement")).to_contain_text("Codes arrive at once")
        assert_no_horizontal_scroll(page, f"catalog-{lang}-{viewport['width']}", artifacts_dir)

        # A category narrows the shelf; a search inside it narrows it to one product.
        page.click("#category-gift-cards")
        expect(page.locator(".product-link")).to_have_count(2)
        page.fill("#search-q", "steam")
        page.click("#search-go")
        expect(page.locator(".product-link")).to_have_count(1)
        thumb = page.locator(".card.product img").first
        page.wait_for_function(
            "() => { const i = document.querySelector('.card.product img'); return i && i.complete; }"
        )
        assert thumb.evaluate("img => img.naturalWidth") > 0
        page.locator(".product-link").click()
        expect(page).to_have_url(f"{public_url}/p/{steam.slug}/")

        # The epay aggregator takes Alipay and WeChat Pay: the buyer picks WeChat Pay here; the total follows qty.
        expect(page.locator("#method-wxpay")).to_be_visible()
        page.check("#method-wxpay")
        page.fill("#id_quantity", "2")
        expect(page.locator("#total-amount")).to_contain_text("19.80")
        page.fill("#id_email", "catalog@example.com")
        page.fill("#id_query_password", "hunter22")
        assert_no_horizontal_scroll(page, f"product-{lang}-{viewport['width']}", artifacts_dir)
        page.click("#buy")

        # The pay page opens straight on the chosen method: no second picker.
        order = Order.objects.get()
        expect(page).to_have_url(f"{public_url}/orders/{order.order_no}/pay/?method=wxpay")
        expect(page.locator("#active-method")).to_be_visible()
        payment = Payment.objects.get(reference=order.order_no)
        assert payment.method == "wxpay"
        assert_no_horizontal_scroll(page, f"pay-{lang}-{viewport['width']}", artifacts_dir)

        page.locator("#cashier-link").click()
        page.click("#pay")
        expect(page).to_have_url(re.compile(rf"^{re.escape(public_url)}/orders/{order.order_no}/"))
        expect(page.locator("#secrets code")).to_have_count(2)
        order.refresh_from_db()
        assert order.state == OrderState.DELIVERED
        assert_no_horizontal_scroll(page, f"delivered-{lang}-{viewport['width']}", artifacts_dir)
    finally:
        context.close()
    assert not errors, errors
