"""Stripe's balance (GET /v1/balance) through the adapter against the simulator over real HTTP: what the simulator
holds after a charge, a refund and a transfer, pending until the charge's available_on; an answer that is not a
balance and a 5xx are never read as one (Stripe signs no API answer: TLS is its proof, so the shape is checked)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from core.money import Money
from payments.channels.base import (
    AccountConfig,
    Capability,
    ChannelBalance,
    CreateOrder,
    PayoutRequest,
    RefundRequest,
    Retryable,
    Unknown,
)
from payments.channels.stripe.adapter import StripeAdapter
from payments.simulators.stripe import StripeSimulator

FUNDED = 1_000_00


@pytest.fixture
def sim() -> Iterator[StripeSimulator]:
    s = StripeSimulator().start()
    s.fund(FUNDED)
    yield s
    s.stop()


@pytest.fixture
def adapter(sim: StripeSimulator) -> StripeAdapter:
    account = sim.account()
    return StripeAdapter(
        AccountConfig(
            account_id=1,
            code="stripe",
            merchant_no=account.merchant_no,
            base_url=account.base_url,
            currency=account.currency,
            credentials=account.credentials,
        )
    )


def cny(minor: int) -> Money:
    return Money(minor, "CNY")


def _order(no: str, minor: int) -> CreateOrder:
    return CreateOrder(no, cny(minor), "Gift card", "", "http://shop.example/orders/S/", "127.0.0.1", "card")


def test_stripe_reports_a_balance():
    assert Capability.BALANCE in StripeAdapter.capabilities


def test_a_charge_is_pending_until_available_and_a_refund_and_a_transfer_leave_at_once(adapter, sim):
    # Given a charge of 100.00, 30.00 of it refunded (Stripe keeps its fee), and a transfer of 25.00
    adapter.create(_order("S-BAL", 100_00))
    sim.pay("S-BAL")
    refund = RefundRequest("R-BAL", "S-BAL", "", cny(30_00), cny(100_00), "", "")
    assert adapter.refund(refund).status == "succeeded"
    payout = PayoutRequest("P-BAL", cny(25_00), sim.connected_account(), "M", "settle")
    assert adapter.payout(payout).status == "succeeded"
    fee = sim.fee_for(100_00)

    # When the shop asks now, the charge is still pending; the refund and the transfer left available at once
    assert adapter.balance() == ChannelBalance(
        available=cny(FUNDED - 30_00 - 25_00), pending=cny(100_00 - fee), provider_status="balance"
    )

    # And once the charge's available_on has passed, all of it is available
    with time_machine.travel(datetime.now(UTC) + timedelta(days=3), tick=True):
        later = adapter.balance()
    assert later.available == cny(FUNDED - 30_00 - 25_00 + 100_00 - fee)
    assert later.pending == cny(0)


def test_an_answer_that_is_not_a_balance_is_unknown(adapter, sim):
    sim.tamper_balance = {"available": [{"amount": "1000.00", "currency": "cny"}]}

    with pytest.raises(Unknown) as exc:
        adapter.balance()

    assert exc.value.code == "bad_response"


def test_a_5xx_is_retryable_a_read_moved_nothing(adapter, sim):
    sim.faults.fail_5xx = 1

    with pytest.raises(Retryable) as exc:
        adapter.balance()

    assert exc.value.code == "http_5xx"
    assert adapter.balance().available == cny(FUNDED)
