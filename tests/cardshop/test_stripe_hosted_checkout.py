"""Point 7: card data never touches our pages. A Stripe payment sends the buyer to the Checkout page on the
provider's origin; no page or template of ours has a field for a card number, expiry or security code."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from django.conf import settings as django_settings

from cardshop.models import CardSecret, Order, OrderState, SecretStatus
from payments.models import ChannelAccount, Payment, PaymentStatus
from payments.simulators.stripe import CARD_OK, StripeSimulator
from tests.cardshop.helpers import checkout
from tests.conftest import make_product

pytestmark = pytest.mark.django_db(transaction=True)

# What a card field looks like in any of the usual spellings: our old form's names, Checkout's, autocomplete.
CARD_FIELD = re.compile(r"card|cc-|cvc|cvv|csc|pan\b|exp(iry|_month|_year|-month|-year)", re.IGNORECASE)


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, str]] = []
        self.forms: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag in ("input", "select", "textarea"):
            self.fields.append(values)
        elif tag == "form":
            self.forms.append(values)


def _card_fields(html: str) -> list[dict[str, str]]:
    parser = _Inputs()
    parser.feed(html)
    return [
        f
        for f in parser.fields
        if any(CARD_FIELD.search(f.get(attr, "")) for attr in ("name", "id", "autocomplete", "placeholder"))
    ]


@pytest.fixture(scope="module")
def stripe_sim():
    sim = StripeSimulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def stripe_account(stripe_sim, public_url):
    acct = stripe_sim.account(webhook_url=f"{public_url}/notify/stripe/")
    return ChannelAccount.objects.create(
        code="stripe",
        name="Stripe (simulator)",
        merchant_no=acct.merchant_no,
        base_url=acct.base_url,
        currency=acct.currency,
        credentials=json.dumps(acct.credentials),
    )


def test_stripe_pay_page_has_no_card_field_and_links_to_the_provider_page(
    public_url, stripe_account, stripe_sim, merchant
):
    product = make_product(merchant, secrets_count=1, currency="CNY")
    buyer = requests.Session()
    resp = checkout(buyer, public_url, product.slug)
    order = Order.objects.get()
    pay = buyer.get(public_url + resp.headers["Location"])  # Stripe is the only channel: no method to pick
    assert pay.status_code == 200
    payment = Payment.objects.get()
    assert payment.channel_code == "stripe" and payment.provider_trade_no.startswith("cs_")

    # Our page: no field a card could be typed into, and no form posting anywhere but to us.
    assert _card_fields(pay.text) == []
    parser = _Inputs()
    parser.feed(pay.text)
    assert all(urlsplit(f.get("action", "")).netloc in ("", urlsplit(public_url).netloc) for f in parser.forms)
    assert "client_secret" not in pay.text and stripe_account.credentials_dict()["publishable_key"] not in pay.text
    cashier = re.search(r'id="cashier-link" href="([^"]+)"', pay.text).group(1)
    assert cashier == payment.pay_url == f"{stripe_sim.base_url}/c/pay/{payment.provider_trade_no}"

    # The provider's page is where the card goes; paying there brings the buyer back to our order page.
    hosted = requests.get(cashier, timeout=5)
    assert urlsplit(cashier).netloc != urlsplit(public_url).netloc and _card_fields(hosted.text)
    card = {"cardNumber": CARD_OK, "cardExpiry": "12 / 34", "cardCvc": "123"}
    back = requests.post(cashier, data=card, allow_redirects=False, timeout=5)
    assert back.status_code == 303 and back.headers["Location"] == f"{public_url}/orders/{order.order_no}/"
    detail = buyer.get(back.headers["Location"])
    sold = CardSecret.objects.get(order=order, status=SecretStatus.SOLD)
    assert sold.secret in detail.text and _card_fields(detail.text) == []
    assert Order.objects.get().state == OrderState.DELIVERED
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED


def _template_files() -> list[Path]:
    dirs = [Path(d) for t in django_settings.TEMPLATES for d in t.get("DIRS", [])]
    root = Path(django_settings.BASE_DIR)
    dirs += [p for p in root.glob("*/templates") if p.is_dir()]
    return sorted({f for d in dirs for f in d.rglob("*.html")})


def test_no_template_of_ours_has_a_card_field():
    files = _template_files()
    assert any(f.name == "pay.html" for f in files)  # the walk found the storefront's templates
    offenders = {str(f): fields for f in files if (fields := _card_fields(f.read_text(encoding="utf-8")))}
    assert offenders == {}
