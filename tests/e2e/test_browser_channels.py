"""A buyer in a real browser pays through each real-world channel the pay page offers.

Two channel accounts (Alipay and Stripe, both CNY) are enabled, so the pay page first asks how to pay:
- Alipay: QR image + cashier link (signed page.pay URL) -> simulator cashier -> signed async notify to the
  shop -> browser returned to the order page, which shows the delivered secret.
- Stripe: no card field on our pay page; its cashier link opens the Checkout Session's hosted page on the
  simulator's origin, where the card is typed -> signed webhook to /notify/stripe/ -> 303 back to the order
  page. A declined card stays on the provider's page (payment_intent.payment_failed, order still pending) and
  another card then pays.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from cardshop.models import CardSecret, Order, OrderState, SecretStatus
from payments.models import Payment
from payments.simulators.stripe import CARD_DECLINED, CARD_OK
from tests.conftest import make_product
from tests.e2e.helpers import channel_account_create

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def channels(public_url, alipay_sim, stripe_sim):
    """One enabled account per channel; Stripe's webhook endpoint is this live server's /notify/stripe/."""
    alipay_sim.faults.reset()
    stripe_sim.faults.reset()
    accounts = {
        "alipay": alipay_sim.account(),
        # account() sets (or updates) the webhook URL, so a session-wide simulator follows the live server.
        "stripe": stripe_sim.account(webhook_url=f"{public_url}/notify/stripe/"),
    }
    for code, acct in accounts.items():
        channel_account_create(code, acct)
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
    assert qr.get_attribute("src") == f"/orders/{order.order_no}/pay/qr.png?p={Payment.objects.get().out_trade_no}"
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


def _to_hosted_checkout(page, base: str, order: Order, stripe_sim) -> None:
    """Our pay page has no card field (and no QR: a hosted page is opened, not scanned); its link leads to
    the Checkout page on the provider's origin."""
    expect(page.locator("#cashier-link")).to_be_visible()
    assert page.locator("#qr").count() == 0
    # Nothing of the card is typed on our origin (the page's only inputs are the language switch's).
    card_fields = "input[name*=card i], input[id*=card i], input[autocomplete^=cc-], input[name*=cvc i]"
    assert page.locator(card_fields).count() == 0
    assert page.locator("input:not([type=hidden])").count() == 0
    payment = Payment.objects.get()
    cashier = page.locator("#cashier-link")
    assert (
        cashier.get_attribute("href") == payment.pay_url == f"{stripe_sim.base_url}/c/pay/{payment.provider_trade_no}"
    )
    cashier.click()
    expect(page).to_have_url(f"{stripe_sim.base_url}/c/pay/{payment.provider_trade_no}")
    expect(page.locator("#amount")).to_have_text(order.amount.to_decimal_str())
    expect(page.locator("#session-status")).to_have_text("open")


def _pay_on_checkout(page, number: str) -> None:
    page.fill("#cardNumber", number)
    page.fill("#cardExpiry", "12 / 34")
    page.fill("#cardCvc", "123")
    page.click("#submit")


def test_buyer_pays_on_the_stripe_hosted_checkout(page, public_url, channels, stripe_sim, cny_product, artifacts_dir):
    base = public_url
    order = _checkout(page, base, cny_product)
    _choose(page, base, order, "card")
    _to_hosted_checkout(page, base, order, stripe_sim)
    page.screenshot(path=str(artifacts_dir / "stripe-checkout.png"), full_page=True)

    _pay_on_checkout(page, CARD_OK)

    # The simulator posts the signed webhook, then 303s the browser back to the order page.
    _assert_delivered(page, base, order)
    out_trade_no = Payment.objects.get().out_trade_no
    assert stripe_sim.trade_for(out_trade_no)["status"] == "paid"
    sent = [d for d in stripe_sim.deliveries if d.get("type") == "checkout.session.completed"]
    assert sent[-1]["status"] == 200 and sent[-1]["url"] == f"{base}/notify/stripe/"
    page.screenshot(path=str(artifacts_dir / "stripe-delivered.png"), full_page=True)


def test_declined_card_stays_on_checkout_and_another_card_pays(page, public_url, channels, stripe_sim, cny_product):
    base = public_url
    order = _checkout(page, base, cny_product)
    _choose(page, base, order, "card")
    _to_hosted_checkout(page, base, order, stripe_sim)
    sent_before = len(stripe_sim.deliveries)

    _pay_on_checkout(page, CARD_DECLINED)

    # Still on the provider's page, which says why; nothing is delivered, the secret stays reserved.
    expect(page.locator("#error")).to_have_text("Your card was declined.")
    expect(page.locator("#session-status")).to_have_text("open")
    failed = [d for d in stripe_sim.deliveries[sent_before:] if d.get("type") == "payment_intent.payment_failed"]
    assert [d.get("status") for d in failed] == [200] and failed[0]["url"] == f"{base}/notify/stripe/"
    order.refresh_from_db()
    assert order.state == OrderState.PENDING
    reserved = CardSecret.objects.get(order=order)
    assert reserved.status == SecretStatus.RESERVED

    # The buyer types another card on the same session: paid, back on the order page, delivered once.
    _pay_on_checkout(page, CARD_OK)
    _assert_delivered(page, base, order)
    assert Payment.objects.count() == 1


def test_buyer_who_leaves_checkout_comes_back_to_a_pending_order(page, public_url, channels, stripe_sim, cny_product):
    base = public_url
    order = _checkout(page, base, cny_product)
    _choose(page, base, order, "card")
    _to_hosted_checkout(page, base, order, stripe_sim)
    page.click("#cancel")
    expect(page).to_have_url(f"{base}/orders/{order.order_no}/")
    expect(page.locator("#order-state")).to_have_class(re.compile(r"\bstate-pending\b"))
    expect(page.locator("#secrets")).to_have_count(0)
    # "Pay now" shows the same live payment: the same session, still open at the provider.
    page.get_by_role("link", name="Pay now").click()
    assert page.locator("#cashier-link").get_attribute("href") == Payment.objects.get().pay_url
