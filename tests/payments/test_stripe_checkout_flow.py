"""Stripe Checkout through the shop's own services and HTTP endpoints, against the simulator over real HTTP:
the order's deadline reaches the session and our close expires it; a declined card is not the end of the
payment; the buyer pays on the provider's page and comes back delivered."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
import time_machine
from django.core import mail
from django.utils import timezone

from cardshop.models import CardSecret, Order, OrderState, SecretStatus
from cardshop.services.checkout import order_payment_start
from cardshop.services.orders import orders_expire_due
from payments.models import ChannelAccount, Payment, PaymentStatus, ProviderNotification
from payments.simulators.stripe import (
    CARD_DECLINED,
    CARD_EXPIRED,
    CARD_INCORRECT_CVC,
    CARD_INSUFFICIENT_FUNDS,
    CARD_OK,
    StripeSimulator,
)
from tests.cardshop.helpers import buy
from tests.conformance.test_channels import _wait
from tests.conftest import make_product

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def stripe_sim():
    sim = StripeSimulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def stripe_shop(stripe_sim, live_server, settings, merchant):
    """One Stripe account whose webhook endpoint is this live server; a CNY product with two secrets."""
    stripe_sim.faults.reset()
    settings.CARDSHOP_PUBLIC_URL = live_server.url
    acct = stripe_sim.account(webhook_url=f"{live_server.url}/notify/stripe/")
    ChannelAccount.objects.create(
        code="stripe",
        name="Stripe (simulator)",
        merchant_no=acct.merchant_no,
        base_url=acct.base_url,
        currency=acct.currency,
        credentials=json.dumps(acct.credentials),
    )
    return make_product(merchant, secrets_count=2, currency=acct.currency)


def _start(product):
    order = buy(product)
    return order, order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", channel_code="stripe")


def _card(number: str) -> dict[str, str]:
    return {"cardNumber": number, "cardExpiry": "12 / 34", "cardCvc": "123"}


def test_the_session_carries_the_order_deadline_and_returns_to_the_order_page(stripe_shop, stripe_sim, live_server):
    order, view = _start(stripe_shop)
    payment = Payment.objects.get()
    session = stripe_sim.session(payment.provider_trade_no)
    assert view.pay_url == payment.pay_url == session["url"]
    assert session["client_reference_id"] == payment.out_trade_no
    assert session["success_url"] == session["cancel_url"] == f"{live_server.url}/orders/{order.order_no}/"
    # A 15-minute order is below Checkout's 30-minute floor: the session is sent deadline + 31 min, and
    # our own close at the deadline ends it sooner (next test).
    assert session["expires_at"] == int(order.expires_at.timestamp()) + 31 * 60 + (order.expires_at.microsecond > 0)


def test_order_expiry_expires_the_session_and_the_provider_refuses_payment(
    stripe_shop, stripe_sim, django_capture_on_commit_callbacks
):
    order, view = _start(stripe_shop)
    with time_machine.travel(timezone.now() + timedelta(minutes=20), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            assert orders_expire_due() == 1
    assert Order.objects.get(pk=order.pk).state == OrderState.EXPIRED
    closed = Payment.objects.get()
    assert closed.status == PaymentStatus.CLOSED and closed.error_code == "closed_on_expiry"
    assert stripe_sim.session(closed.provider_trade_no)["status"] == "expired"
    with pytest.raises(ValueError):  # the buyer's late card is refused by the provider itself
        stripe_sim.pay(closed.out_trade_no)
    late = requests.post(view.pay_url, data=_card(CARD_OK), allow_redirects=False, timeout=5)
    assert late.status_code == 409 and "cardNumber" not in late.text
    assert CardSecret.objects.filter(status=SecretStatus.SOLD).count() == 0


def test_a_payment_made_just_before_the_close_is_delivered_as_a_late_payment(
    stripe_shop, stripe_sim, django_capture_on_commit_callbacks
):
    order, view = _start(stripe_shop)
    stripe_sim.faults.drop_notify = 1
    stripe_sim.pay(view.out_trade_no)  # paid at the provider; its webhook went nowhere
    with time_machine.travel(timezone.now() + timedelta(minutes=20), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            orders_expire_due()
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    assert order.events.get(kind="paid").detail["late"] is True


def test_stripe_decline_then_pay_delivers_once(stripe_shop, stripe_sim):
    order, view = _start(stripe_shop)
    sent_before = len(stripe_sim.deliveries)
    stripe_sim.decline(view.out_trade_no)  # payment_intent.payment_failed reaches /notify/stripe/
    failed = [d for d in stripe_sim.deliveries[sent_before:] if d["type"] == "payment_intent.payment_failed"]
    assert [d.get("status") for d in failed] == [200]
    assert Order.objects.get(pk=order.pk).state == OrderState.PENDING
    declined = Payment.objects.get()
    assert declined.status == PaymentStatus.PENDING  # a decline on an open session is not the end
    assert declined.decline_code == declined.error_code == "generic_decline"  # the issuer's reason, not the event
    # The buyer tries another card on the same (still open) session: paid and delivered once.
    stripe_sim.pay(view.out_trade_no)
    assert _wait(lambda: Order.objects.get(pk=order.pk).state == OrderState.DELIVERED)
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.provider_trade_no == stripe_sim.trade_for(view.out_trade_no)["provider_trade_no"]
    assert CardSecret.objects.filter(order=order, status=SecretStatus.SOLD).count() == 1
    assert ProviderNotification.objects.count() == 2
    assert _wait(lambda: len(mail.outbox) == 1)


def test_a_declined_card_leaves_the_session_payable_at_the_provider(stripe_shop, stripe_sim):
    """What the adapter and simulator promise whatever the service decides about the decline."""
    order, view = _start(stripe_shop)
    sent_before = len(stripe_sim.deliveries)
    page = requests.post(view.pay_url, data=_card(CARD_DECLINED), allow_redirects=False, timeout=5)
    assert page.status_code == 200 and "Your card was declined." in page.text
    failed = [d for d in stripe_sim.deliveries[sent_before:] if d["type"] == "payment_intent.payment_failed"]
    assert [d.get("status") for d in failed] == [200]  # verified and acknowledged, not refused
    notification = ProviderNotification.objects.get()
    assert notification.event_key == failed[0]["event_id"]
    assert stripe_sim.trade_for(view.out_trade_no)["status"] == "pending"
    assert Order.objects.get(pk=order.pk).state == OrderState.PENDING


@pytest.mark.parametrize(
    "card_number,error_code,decline_code",
    [
        (CARD_DECLINED, "card_declined", "generic_decline"),
        (CARD_INSUFFICIENT_FUNDS, "card_declined", "insufficient_funds"),
        (CARD_EXPIRED, "expired_card", None),
        (CARD_INCORRECT_CVC, "incorrect_cvc", None),
    ],
)
def test_the_decline_reason_travels_in_last_payment_error_to_the_payment(
    stripe_shop, stripe_sim, card_number, error_code, decline_code
):
    """As on Stripe: the failed intent's last_payment_error has the error code and, for an issuer decline, its
    decline_code; the adapter reads decline_code first, then code, and the payment records it."""
    _, view = _start(stripe_shop)
    sent_before = len(stripe_sim.deliveries)
    page = requests.post(view.pay_url, data=_card(card_number), allow_redirects=False, timeout=5)
    assert page.status_code == 200
    failed = [d for d in stripe_sim.deliveries[sent_before:] if d["type"] == "payment_intent.payment_failed"]
    assert [d.get("status") for d in failed] == [200]
    session_id = Payment.objects.get().provider_trade_no
    intent = stripe_sim.intent(stripe_sim.session(session_id)["payment_intent"])
    error = intent["last_payment_error"]
    assert (intent["status"], error["type"], error["code"]) == ("requires_payment_method", "card_error", error_code)
    assert error.get("decline_code") == decline_code
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.PENDING
    assert payment.decline_code == payment.error_code == (decline_code or error_code)
