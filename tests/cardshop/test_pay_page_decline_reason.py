"""Issue 10: a declined card says why. The buyer's card is refused on Stripe's hosted page (the simulator, over
real HTTP, with Stripe's test cards); the signed payment_intent.payment_failed reaches /notify/stripe/, and our
pay page shows the reason in plain words next to the offers to try another card or pay another way. A code we
do not know gets the generic words, never the provider's raw string; an error that is no decline (a query
timeout) shows no reason at all."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import requests
import time_machine
from django.utils import timezone

from cardshop.decline_reasons import DECLINE_MESSAGES, GENERIC, decline_message
from cardshop.models import Order, OrderState
from cardshop.tasks import payments_sync_due_task
from payments.models import ChannelAccount, Payment, PaymentStatus
from payments.simulators.stripe import (
    CARD_DECLINED,
    CARD_EXPIRED,
    CARD_INCORRECT_CVC,
    CARD_INSUFFICIENT_FUNDS,
    StripeSimulator,
)
from tests.cardshop.helpers import checkout
from tests.conftest import make_product

pytestmark = pytest.mark.django_db(transaction=True)

# A real (Luhn-valid) card number: Stripe's test mode refuses it with decline_code test_mode_live_card.
LIVE_CARD = "4111111111111111"
EVERY_REASON = {str(m) for m in DECLINE_MESSAGES.values()} | {str(GENERIC)}


@pytest.fixture(scope="module")
def stripe_sim():
    sim = StripeSimulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def stripe_product(stripe_sim, public_url, merchant):
    stripe_sim.faults.reset()
    acct = stripe_sim.account(webhook_url=f"{public_url}/notify/stripe/")
    ChannelAccount.objects.create(
        code="stripe",
        name="Stripe (simulator)",
        merchant_no=acct.merchant_no,
        base_url=acct.base_url,
        currency=acct.currency,
        credentials=json.dumps(acct.credentials),
    )
    return make_product(merchant, secrets_count=1, currency=acct.currency)


def _declined_on_the_hosted_page(public_url, product, card_number: str) -> tuple[requests.Session, str]:
    """The buyer checks out, opens the provider's page and types `card_number`; returns them and our pay URL."""
    buyer = requests.Session()
    pay_url = public_url + checkout(buyer, public_url, product.slug).headers["Location"]
    first = buyer.get(pay_url)
    assert first.status_code == 200 and 'id="declined"' not in first.text
    cashier = re.search(r'id="cashier-link" href="([^"]+)"', first.text).group(1)
    card = {"cardNumber": card_number, "cardExpiry": "12 / 34", "cardCvc": "123"}
    hosted = requests.post(cashier, data=card, allow_redirects=False, timeout=5)
    assert hosted.status_code == 200  # the provider's page again, for another card
    return buyer, pay_url


def _reason_on(page: str) -> str:
    m = re.search(r'<strong id="decline-reason">([^<]*)</strong>', page)
    assert m, "no decline reason on the pay page"
    return m.group(1)


@pytest.mark.parametrize(
    "card_number,code,words",
    [
        (CARD_DECLINED, "generic_decline", "Your bank declined the payment."),
        (CARD_INSUFFICIENT_FUNDS, "insufficient_funds", "Your card has insufficient funds."),
        (CARD_EXPIRED, "expired_card", "Your card has expired."),
        (CARD_INCORRECT_CVC, "incorrect_cvc", "The security code was wrong."),
    ],
)
def test_a_declined_stripe_card_shows_why_and_still_offers_another_card(
    public_url, stripe_product, card_number, code, words
):
    buyer, pay_url = _declined_on_the_hosted_page(public_url, stripe_product, card_number)
    payment = Payment.objects.get()
    assert (payment.status, payment.decline_code, payment.error_code) == (PaymentStatus.PENDING, code, code)
    page = buyer.get(pay_url).text
    assert 'id="declined"' in page and _reason_on(page) == words
    assert "Your last attempt was declined." in page
    assert code not in page  # the provider's word is for operators
    # The same session stays the way to pay with another card.
    assert re.search(r'id="cashier-link" href="([^"]+)"', page).group(1) == payment.pay_url
    assert Order.objects.get().state == OrderState.PENDING


def test_a_decline_code_we_do_not_know_gets_the_generic_words(public_url, stripe_product):
    buyer, pay_url = _declined_on_the_hosted_page(public_url, stripe_product, LIVE_CARD)
    assert Payment.objects.get().decline_code == "test_mode_live_card"
    page = buyer.get(pay_url).text
    assert _reason_on(page) == "The payment was declined by your bank or card issuer."
    assert "test_mode_live_card" not in page


def test_decline_message_falls_back_for_unknown_and_empty_codes():
    assert decline_message("insufficient_funds") == "Your card has insufficient funds."
    assert decline_message("do_not_honor") == "Your bank declined the payment."
    assert decline_message("PAYERROR") == decline_message("") == decline_message("Some <b>raw</b> text") == GENERIC


def test_a_query_timeout_recorded_on_the_payment_shows_no_decline(public_url, product, epay_sim, settings):
    settings.PAYMENTS_PROVIDER_TIMEOUTS = (1.0, 0.5)
    buyer = requests.Session()
    pay_url = public_url + checkout(buyer, public_url, product.slug).headers["Location"]
    assert 'id="qr"' in buyer.get(pay_url + "?method=alipay").text  # the payment is made and shown
    epay_sim.faults.timeout, epay_sim.faults.hang_seconds = 1, 1.5
    with time_machine.travel(timezone.now() + timedelta(seconds=16), tick=False):
        assert payments_sync_due_task.delay().get() == 0
    payment = Payment.objects.get()
    assert (payment.status, payment.error_code, payment.decline_code) == (PaymentStatus.PENDING, "timeout", "")
    page = buyer.get(pay_url).text
    assert 'id="declined"' not in page and 'id="decline-reason"' not in page
    assert not any(words in page for words in EVERY_REASON)
    assert "timeout" not in page


def test_a_declined_attempt_counts_for_the_buyers_network_once(public_url, stripe_product):
    """Risk's card-testing signal: each refused attempt counts for the buyer's IP and device (a second card, a
    second count); the same decline told again (the janitor's query) is not a new one."""
    from risk.features import Subject, counts_read

    buyer, pay_url = _declined_on_the_hosted_page(public_url, stripe_product, CARD_DECLINED)
    order = Order.objects.get()
    ip, device = order.buyer_ip, order.buyer_device
    assert device == buyer.cookies["cs_device"]  # the checkout kept the browser's device cookie

    def failures() -> tuple[int, int]:
        counts = counts_read(Subject(ip=ip, device=device))
        return counts["ip_failed_payments_1h"], counts["device_failed_payments_1h"]

    assert failures() == (1, 1)
    cashier = re.search(r'id="cashier-link" href="([^"]+)"', buyer.get(pay_url).text).group(1)
    card = {"cardNumber": CARD_INSUFFICIENT_FUNDS, "cardExpiry": "12 / 34", "cardCvc": "123"}
    assert requests.post(cashier, data=card, allow_redirects=False, timeout=5).status_code == 200
    assert failures() == (2, 2)
    Payment.objects.update(next_query_at=timezone.now())
    payments_sync_due_task.delay().get()  # the query says insufficient_funds again: nothing new
    assert failures() == (2, 2)
