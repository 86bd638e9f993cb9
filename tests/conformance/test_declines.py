"""A decline is not the end of a payment (issue 9, point 1): the buyer's card is refused (WeChat Pay PAYERROR,
the bank's DECLINED), the trade stays payable at the provider, the buyer retries with another card and the
order is delivered once. Adapters report a decline as a FAILED observation; they never raise on it. The
observation carries the provider's decline code (issue 10): the bank's declineReason (its simulator declines
with do_not_honor unless told otherwise); WeChat Pay names no reason code, so its decline word PAYERROR. The
payment keeps it as its decline_code for the pay page.

Stripe's decline (`payment_intent.payment_failed`, its reason in last_payment_error) is covered by its own suite
(tests/payments/test_stripe_checkout_flow.py).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from cardshop.models import CardSecret
from cardshop.tasks import payments_sync_due_task
from payments.channels.base import ObservedStatus
from payments.models import Payment, PaymentStatus, ProviderNotification
from payments.services.adapters import adapter_for
from tests.conformance import test_channels
from tests.conformance.test_channels import _delivered, _wait

pytestmark = pytest.mark.django_db(transaction=True)

shop, simulators = test_channels.shop, test_channels.simulators

# channel -> the provider's word for a declined attempt
DECLINING = {"wechatpay": "PAYERROR", "bankgw": "DECLINED"}
# channel -> the decline code its adapter reports for the simulator's default decline
DECLINE_CODE = {"wechatpay": "PAYERROR", "bankgw": "do_not_honor"}
# channels whose protocol sends a callback for a decline (WeChat Pay v3 notifies successes only)
NOTIFIES_DECLINE = ["bankgw"]
declining = pytest.mark.parametrize("shop", list(DECLINING), indirect=True)


def _janitor_runs():
    """The pull path asks the provider about every payment due (the first rung is 15 s after the create)."""
    with time_machine.travel(timezone.now() + timedelta(seconds=16), tick=False):
        payments_sync_due_task.delay().get()


@declining
def test_decline_is_a_failed_observation_and_the_trade_stays_payable(shop):
    _, payment = shop.start()
    adapter = adapter_for(Payment.objects.get().account)
    shop.sim.faults.drop_notify = 2  # this test reads the provider by query only
    shop.sim.decline(payment.out_trade_no)
    observed = adapter.query(payment.out_trade_no)
    assert (observed.status, observed.provider_status) == (ObservedStatus.FAILED, DECLINING[shop.code])
    assert observed.decline_code == DECLINE_CODE[shop.code]
    assert shop.sim.trade_for(payment.out_trade_no)["status"] == "pending"  # still payable at the provider
    shop.sim.pay(payment.out_trade_no)  # the buyer's second card
    assert adapter.query(payment.out_trade_no).status == ObservedStatus.SUCCEEDED


@pytest.mark.parametrize("shop", NOTIFIES_DECLINE, indirect=True)
def test_decline_callback_is_verified_and_acknowledged(shop):
    _, payment = shop.start()
    shop.sim.decline(payment.out_trade_no)
    attempts = shop.sim.trade_for(payment.out_trade_no)["notify_attempts"]
    assert [(a["status_code"], a["acknowledged"]) for a in attempts] == [(200, True)]
    assert ProviderNotification.objects.get().event_key.endswith(f":{DECLINING[shop.code]}")
    payment = Payment.objects.get()
    assert payment.status == PaymentStatus.PENDING  # the buyer may still pay it
    assert payment.decline_code == payment.error_code == DECLINE_CODE[shop.code]


@pytest.mark.parametrize("shop", ["bankgw"], indirect=True)
@pytest.mark.parametrize("reason,code", [("insufficient_funds", "insufficient_funds"), ("", "DECLINED")])
def test_the_bank_s_decline_reason_reaches_the_query_and_the_callback(shop, reason, code):
    """The signed callback and the QueryPayment answer carry the same declineReason; none given, the code is the
    bank's word DECLINED."""
    _, payment = shop.start()
    shop.sim.decline(payment.out_trade_no, reason=reason)
    assert Payment.objects.get().decline_code == code  # from the callback
    assert adapter_for(Payment.objects.get().account).query(payment.out_trade_no).decline_code == code


@declining
def test_decline_then_pay_delivers_once(shop):
    order, payment = shop.start()
    shop.sim.decline(payment.out_trade_no)
    _janitor_runs()  # WeChat reports PAYERROR to the query only
    assert Payment.objects.get().decline_code == DECLINE_CODE[shop.code]
    shop.sim.pay(payment.out_trade_no)
    assert _wait(lambda: _delivered(order))
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert CardSecret.objects.filter(order=order).count() == 1
    assert _wait(lambda: len(mail.outbox) == 1)


@declining
def test_a_decline_on_a_payment_we_hold_in_doubt_then_paid_delivers_once(shop):
    """We hold the payment UNKNOWN (as after a lost create answer), the provider reports the first card
    declined (the janitor may conclude FAILED), then the buyer's second card pays: a provider's paid wins."""
    order, payment = shop.start()
    Payment.objects.filter(out_trade_no=payment.out_trade_no).update(status=PaymentStatus.UNKNOWN)
    shop.sim.decline(payment.out_trade_no)
    _janitor_runs()
    assert Payment.objects.get().decline_code == DECLINE_CODE[shop.code]
    shop.sim.pay(payment.out_trade_no)
    assert _wait(lambda: _delivered(order), seconds=3)
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert CardSecret.objects.filter(order=order).count() == 1
