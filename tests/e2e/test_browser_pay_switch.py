"""The buyer changes the payment method on the pay page, at 1400 and 390 px, in English and Chinese.

Three channels, each with one method: Alipay, WeChat Pay and Stripe (card), all on their simulators, all CNY.
- Switch: Alipay is picked on the product page; "Pay another way" moves to WeChat Pay. The Alipay trade is closed
  at the provider before the WeChat one is made; the buyer pays by WeChat and the order page shows the code.
- Decline: the card is declined on Stripe's hosted page; back on our pay page the buyer is told and offered
  another card or another method, switches to Alipay (the Checkout Session is expired first) and is delivered.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from cardshop.models import CardSecret, Order, OrderState, SecretStatus
from payments.models import Payment, PaymentStatus
from payments.simulators.stripe import CARD_INSUFFICIENT_FUNDS
from tests.conftest import make_product
from tests.e2e.helpers import SCREEN_IDS, SCREENS, assert_no_horizontal_scroll, channel_account_create, screen_name

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The pay page's words in each language (the zh-hans ones from the catalog): a Chinese page proves translation.
WORDS = {
    "en": {
        "alipay": "Alipay",
        "wxpay": "WeChat Pay",
        "card": "Card",
        "paying_with": "Paying with {}",
        "pay_another_way": "Pay another way:",
        "declined": "Your last attempt was declined.",
        "continue": "Continue to the payment page",
    },
    "zh-hans": {
        "alipay": "支付宝",
        "wxpay": "微信支付",
        "card": "银行卡",
        "paying_with": "正在使用 {} 支付",
        "pay_another_way": "更换支付方式：",
        "declined": "上次支付被拒绝。",
        "continue": "前往付款页面",
    },
}


@pytest.fixture
def shop(public_url, merchant, alipay_sim, wechatpay_sim, stripe_sim):
    """A CNY product and one enabled account per channel; Stripe's webhooks come to this live server."""
    for sim in (alipay_sim, wechatpay_sim, stripe_sim):
        sim.faults.reset()
    channel_account_create("alipay", alipay_sim.account())
    channel_account_create("wechatpay", wechatpay_sim.account())
    channel_account_create("stripe", stripe_sim.account(webhook_url=f"{public_url}/notify/stripe/"))
    return make_product(merchant, secrets_count=3, currency="CNY")


@pytest.fixture
def buyer(browser, viewport, locale):
    context = browser.new_context(viewport=viewport, locale=locale)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"uncaught JavaScript errors: {errors}"


def _step(page, viewport, lang, artifacts_dir, test: str, step: str) -> None:
    """Every step's screenshot; at 390 px (and 1400) no page may scroll sideways."""
    assert_no_horizontal_scroll(page, f"{test}-{screen_name(viewport, lang)}-{step}", artifacts_dir)


def _buy_with(page, base: str, product, method: str, lang: str) -> Order:
    """Product page: pick the method there, then Buy; the pay page opens on that method."""
    page.goto(f"{base}/p/{product.slug}/")
    assert page.evaluate("document.documentElement.lang") == lang
    expect(page.locator(f"label[for=method-{method}]")).to_contain_text(WORDS[lang][method])
    page.check(f"#method-{method}")
    page.fill("#id_email", "switch@example.com")
    page.fill("#id_query_password", "hunter22")
    page.click("#buy")
    order = Order.objects.get()
    expect(page).to_have_url(f"{base}/orders/{order.order_no}/pay/?method={method}")
    return order


def _assert_paying_with(page, lang: str, method: str, others: list[str]) -> None:
    words = WORDS[lang]
    expect(page.locator("#active-method")).to_have_text(words["paying_with"].format(words[method]))
    expect(page.locator("#switch-method span")).to_have_text(words["pay_another_way"])
    for other in others:
        expect(page.locator(f"#switch-to-{other}")).to_have_text(words[other])
    expect(page.locator(f"#switch-to-{method}")).to_have_count(0)


def _assert_delivered(page, base: str, order: Order) -> None:
    expect(page).to_have_url(f"{base}/orders/{order.order_no}/")
    sold = CardSecret.objects.get(order=order)
    expect(page.locator("#secrets code")).to_have_text([sold.secret])
    order.refresh_from_db()
    assert (order.state, sold.status) == (OrderState.DELIVERED, SecretStatus.SOLD)
    assert Payment.objects.filter(reference=order.order_no, status=PaymentStatus.SUCCEEDED).count() == 1


@pytest.mark.parametrize("viewport,locale,lang", SCREENS, ids=SCREEN_IDS)
def test_buyer_switches_from_alipay_to_wechat_pay_on_the_pay_page(
    buyer, public_url, shop, alipay_sim, wechatpay_sim, artifacts_dir, viewport, locale, lang
):
    page, base = buyer, public_url
    order = _buy_with(page, base, shop, "alipay", lang)
    _assert_paying_with(page, lang, "alipay", ["wxpay", "card"])
    first = Payment.objects.get(reference=order.order_no)
    assert (first.channel_code, first.method, first.status) == ("alipay", "alipay", PaymentStatus.PENDING)
    expect(page.locator("img#qr")).to_have_attribute("src", re.compile(rf"\?p={first.out_trade_no}$"))
    _step(page, viewport, lang, artifacts_dir, "switch", "pay-a")

    page.click("#switch-to-wxpay")
    expect(page).to_have_url(f"{base}/orders/{order.order_no}/pay/")
    _assert_paying_with(page, lang, "wxpay", ["alipay", "card"])
    # The Alipay trade was closed at the provider before the WeChat one was made: one payable trade at a time.
    first.refresh_from_db()
    assert (first.status, first.error_code) == (PaymentStatus.CLOSED, "switched_by_buyer")
    assert alipay_sim.trade_for(first.out_trade_no)["status"] == "closed"
    second = Payment.objects.exclude(pk=first.pk).get(reference=order.order_no)
    assert (second.channel_code, second.method, second.status) == ("wechatpay", "wxpay", PaymentStatus.PENDING)
    # A new QR image URL: never the old trade's cached picture.
    expect(page.locator("img#qr")).to_have_attribute("src", re.compile(rf"\?p={second.out_trade_no}$"))
    page.wait_for_function("() => { const i = document.querySelector('img#qr'); return i.complete && i.naturalWidth; }")
    _step(page, viewport, lang, artifacts_dir, "switch", "pay-b")

    # WeChat's scan page; paying there notifies the shop. The buyer comes back to the order page.
    page.click("#cashier-link")
    expect(page.locator("#out_trade_no")).to_have_text(second.wire_out_trade_no)
    page.click("#pay")
    assert wechatpay_sim.trade_for(second.out_trade_no)["status"] == "paid"
    page.goto(f"{base}/orders/{order.order_no}/")
    _assert_delivered(page, base, order)
    _step(page, viewport, lang, artifacts_dir, "switch", "delivered")


@pytest.mark.parametrize("viewport,locale,lang", SCREENS, ids=SCREEN_IDS)
def test_a_declined_card_then_alipay_delivers(
    buyer, public_url, shop, alipay_sim, stripe_sim, artifacts_dir, viewport, locale, lang
):
    page, base, words = buyer, public_url, WORDS[lang]
    order = _buy_with(page, base, shop, "card", lang)
    _assert_paying_with(page, lang, "card", ["alipay", "wxpay"])
    expect(page.locator("#declined")).to_have_count(0)
    card = Payment.objects.get(reference=order.order_no)
    expect(page.locator("#cashier-link")).to_have_text(words["continue"])
    _step(page, viewport, lang, artifacts_dir, "decline", "pay-card")

    # Stripe's hosted page, on the provider's origin: the card is declined there (payment_intent.payment_failed).
    page.click("#cashier-link")
    expect(page).to_have_url(card.pay_url)
    page.fill("#cardNumber", CARD_INSUFFICIENT_FUNDS)
    page.fill("#cardExpiry", "12 / 34")
    page.fill("#cardCvc", "123")
    page.click("#submit")
    expect(page.locator("#error")).to_have_text("Your card has insufficient funds.")
    page.screenshot(path=str(artifacts_dir / f"decline-{screen_name(viewport, lang)}-stripe.png"), full_page=True)
    card.refresh_from_db()
    assert (card.status, card.error_code, card.decline_code) == (
        PaymentStatus.PENDING,
        "insufficient_funds",
        "insufficient_funds",
    )

    # Back to the shop: the order page, still pending, then its pay page, which says the card was declined and
    # why, and offers the same payment page (another card) or another method.
    page.click("#cancel")
    expect(page).to_have_url(f"{base}/orders/{order.order_no}/")
    expect(page.locator("#order-state")).to_have_class(re.compile(r"\bstate-pending\b"))
    _step(page, viewport, lang, artifacts_dir, "decline", "order-pending")
    page.locator(f"a[href='/orders/{order.order_no}/pay/']").click()
    expect(page.locator("#declined")).to_contain_text(words["declined"])
    expect(page.locator("#decline-reason")).to_be_visible()
    expect(page.locator("#declined")).not_to_contain_text("insufficient_funds")  # never the provider's word
    if lang == "en":  # the Chinese words for the reason come with the lead's translation pass
        expect(page.locator("#decline-reason")).to_have_text("Your card has insufficient funds.")
    _assert_paying_with(page, lang, "card", ["alipay", "wxpay"])
    expect(page.locator("#cashier-link")).to_have_attribute("href", card.pay_url)
    _step(page, viewport, lang, artifacts_dir, "decline", "pay-declined")

    # Alipay instead: the Checkout Session is expired at Stripe first, then the Alipay trade is made.
    page.click("#switch-to-alipay")
    expect(page).to_have_url(f"{base}/orders/{order.order_no}/pay/")
    _assert_paying_with(page, lang, "alipay", ["wxpay", "card"])
    expect(page.locator("#declined")).to_have_count(0)
    card.refresh_from_db()
    assert card.status == PaymentStatus.CLOSED
    assert stripe_sim.trade_for(card.out_trade_no)["status"] == "closed"
    alipay = Payment.objects.exclude(pk=card.pk).get(reference=order.order_no)
    assert (alipay.channel_code, alipay.method) == ("alipay", "alipay")
    page.wait_for_function("() => { const i = document.querySelector('img#qr'); return i.complete && i.naturalWidth; }")
    _step(page, viewport, lang, artifacts_dir, "decline", "pay-alipay")

    # Alipay's cashier pays, notifies the shop and sends the browser back to the delivered order.
    page.click("#cashier-link")
    expect(page.locator("#out_trade_no")).to_have_text(alipay.wire_out_trade_no)
    page.click("#pay")
    _assert_delivered(page, base, order)
    assert alipay_sim.trade_for(alipay.out_trade_no)["status"] == "paid"
    _step(page, viewport, lang, artifacts_dir, "decline", "delivered")
