"""A buyer in a real browser pays through each real-world channel the pay page offers.

Two channel accounts (Alipay and Stripe, both CNY) are enabled, so the pay page first asks how to pay:
- Alipay: QR image + cashier link (signed page.pay URL) -> simulator cashier -> signed async notify to the
  shop -> browser returned to the order page, which shows the delivered secret.
- Stripe: card form posting straight to the simulator's confirm URL -> signed webhook to /notify/stripe/ ->
  303 back to the order page. A declined card leaves the order pending and undelivered.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from cardshop.models import CardSecret, Order, OrderState, SecretStatus
from payments.models import ChannelAccount
from payments.simulators.alipay import AlipaySimulator
from payments.simulators.stripe import CARD_DECLINED, CARD_OK, StripeSimulator
from tests.conftest import make_product

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def alipay_sim():
    sim = AlipaySimulator().start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def stripe_sim():
    sim = StripeSimulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def channels(public_url, alipay_sim, stripe_sim):
    """One enabled account per channel; Stripe's webhook endpoint is this live server's /notify/stripe/."""
    alipay_sim.faults.reset()
    stripe_sim.faults.reset()
    accounts = {
        "alipay": alipay_sim.account(),
        # account() sets (or updates) the webhook URL, so a module-wide simulator follows the live server.
        "stripe": stripe_sim.account(webhook_url=f"{public_url}/notify/stripe/"),
    }
    for code, acct in accounts.items():
        ChannelAccount.objects.create(
            code=code,
            name=f"{code.title()} (simulator)",
            merchant_no=acct.merchant_no,
            base_url=acct.base_url,
            currency=acct.currency,
            credentials=json.dumps(acct.credentials),
        )
    assert {a.currency for a in accounts.values()} == {"CNY"}
    return accounts


@pytest.fixture
def cny_product(merchant):
    return make_product(merchant, secrets_count=3, currency="CNY")


def _checkout(page, base: str, product) -> Order:
    """Catalog -> product page -> checkout form -> pay page; returns the new order."""
    page.goto(base + "/")
    page.get_by_role("link", name=product.name).click()
    expect(page).to_have_url(f"{base}/p/{product.slug}/")
    page.fill("#id_quantity", "1")
    page.fill("#id_email", "buyer@example.com")
    page.fill("#id_query_password", "hunter22")
    page.click("#buy")
    expect(page).to_have_url(re.compile(r"/orders/[^/]+/pay/$"))
    order = Order.objects.get()
    assert page.url == f"{base}/orders/{order.order_no}/pay/"
    expect(page.locator("#order-no")).to_have_text(order.order_no)
    return order


def _choose(page, base: str, order: Order, method: str) -> None:
    """Two enabled channels with different methods: the pay page offers both methods; pick one."""
    expect(page.locator("#pay-with-alipay")).to_be_visible()
    expect(page.locator("#pay-with-card")).to_be_visible()
    link = page.locator(f"#pay-with-{method}")
    assert link.get_attribute("href") == f"?method={method}"
    link.click()
    expect(page).to_have_url(f"{base}/orders/{order.order_no}/pay/?method={method}")


def _assert_delivered(page, base: str, order: Order) -> None:
    expect(page).to_have_url(f"{base}/orders/{order.order_no}/")
    expect(page.locator("#order-state")).to_have_class(re.compile(r"\bstate-delivered\b"))
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    sold = CardSecret.objects.get(order=order, status=SecretStatus.SOLD)
    codes = page.locator("#secrets code")
    expect(codes).to_have_count(1)
    assert codes.inner_text().strip() == sold.secret


def test_buyer_pays_with_alipay_qr_and_cashier(page, public_url, channels, alipay_sim, cny_product, artifacts_dir):
    base = public_url
    order = _checkout(page, base, cny_product)
    _choose(page, base, order, "alipay")

    # A real, decoded QR image served by the shop, and the simulator's signed page.pay link.
    qr = page.locator("img#qr")
    expect(qr).to_be_visible()
    assert qr.get_attribute("src") == f"/orders/{order.order_no}/pay/qr.png"
    page.wait_for_function(
        "() => { const i = document.querySelector('img#qr'); return i.complete && i.naturalWidth > 100; }"
    )
    cashier = page.locator("#cashier-link")
    expect(cashier).to_be_visible()
    href = cashier.get_attribute("href")
    assert href.startswith(alipay_sim.base_url + "/gateway.do?")
    assert "method=alipay.trade.page.pay" in href and "sign=" in href

    # The signed page.pay URL lands on the simulator's cashier; paying there notifies the shop, then returns.
    cashier.click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(alipay_sim.base_url)}/cashier/\d+$"))
    out_trade_no = page.locator("#out_trade_no").inner_text().strip()
    assert out_trade_no
    expect(page.locator("#status")).to_have_text("pending")
    page.click("#pay")

    _assert_delivered(page, base, order)
    trade = alipay_sim.trade_for(out_trade_no)
    assert trade["status"] == "paid"
    assert [a["acknowledged"] for a in trade["notify_attempts"]] == [True]
    assert trade["notify_attempts"][0]["url"] == f"{base}/notify/alipay/"
    page.screenshot(path=str(artifacts_dir / "alipay-delivered.png"), full_page=True)


def _fill_card(page, number: str) -> None:
    page.fill("#card-number", number)
    page.fill("#card-exp-month", "12")
    page.fill("#card-exp-year", "2030")
    page.fill("#card-cvc", "123")


def _card_form(page, base: str, order: Order, stripe_sim, channels):
    form = page.locator("form#card-form")
    expect(form).to_be_visible()
    assert form.get_attribute("action").startswith(stripe_sim.base_url + "/v1/payment_intents/pi_")
    assert form.get_attribute("action").endswith("/confirm")
    assert form.locator("input[name=key]").get_attribute("value") == channels["stripe"].credentials["publishable_key"]
    assert form.locator("input[name=client_secret]").get_attribute("value").startswith("pi_")
    return_url = form.locator("input[name=return_url]").get_attribute("value")
    assert return_url == f"{base}/orders/{order.order_no}/"
    return form


def test_buyer_pays_with_stripe_card_form(page, public_url, channels, stripe_sim, cny_product, artifacts_dir):
    base = public_url
    order = _checkout(page, base, cny_product)
    _choose(page, base, order, "card")
    _card_form(page, base, order, stripe_sim, channels)

    _fill_card(page, CARD_OK)
    page.click("#card-pay")

    # The simulator posts the signed webhook, then 303s the browser back to the order page.
    _assert_delivered(page, base, order)
    sent = [d for d in stripe_sim.deliveries if d.get("type") == "payment_intent.succeeded"]
    assert [d.get("status") for d in sent] == [200]
    assert sent[0]["url"] == f"{base}/notify/stripe/"
    page.screenshot(path=str(artifacts_dir / "stripe-delivered.png"), full_page=True)


def test_declined_card_leaves_the_order_pending(page, public_url, channels, stripe_sim, cny_product):
    base = public_url
    order = _checkout(page, base, cny_product)
    _choose(page, base, order, "card")
    _card_form(page, base, order, stripe_sim, channels)

    _fill_card(page, CARD_DECLINED)
    page.click("#card-pay")

    # Back on the order page: still pending, nothing delivered, and the buyer may pay again.
    expect(page).to_have_url(f"{base}/orders/{order.order_no}/")
    expect(page.locator("#order-state")).to_have_class(re.compile(r"\bstate-pending\b"))
    expect(page.locator("#secrets")).to_have_count(0)
    order.refresh_from_db()
    assert order.state == OrderState.PENDING
    # The secret stays reserved for this order (not sold) and is not on the page.
    reserved = CardSecret.objects.get(order=order)
    assert reserved.status == SecretStatus.RESERVED
    assert reserved.secret not in page.content()
    failed = [d for d in stripe_sim.deliveries if d.get("type") == "payment_intent.payment_failed"]
    assert failed and failed[-1]["url"] == f"{base}/notify/stripe/"

    # "Pay now" brings the same card form back (the intent is still open); the good card then pays.
    page.get_by_role("link", name="Pay now").click()
    _card_form(page, base, order, stripe_sim, channels)
    _fill_card(page, CARD_OK)
    page.click("#card-pay")
    _assert_delivered(page, base, order)
