"""The bank gateway's SOAP `Balance` through zeep against the simulator over real HTTP: signed both ways, what the
bank holds after a paid payment, a refund and a transfer (reserved while it is not final); a forged answer, a
failing bank and a currency the account does not hold are never read as a balance."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

import pytest

from core.money import Money
from payments.channels.bankgw.adapter import BankGatewayAdapter
from payments.channels.base import (
    AccountConfig,
    Capability,
    ChannelBalance,
    CreateOrder,
    PayoutRequest,
    RefundRequest,
    Retryable,
    Terminal,
    Unknown,
)
from payments.simulators.bankgw import HOLD, BankGatewaySimulator, Merchant

OPENING = 50_000
PAYEE = "CN12BANK0000123456789"
AS_OF = "2026-12-01T10:00:00+08:00"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NOTIFY_URL = f"http://127.0.0.1:{_closed_port()}/notify/bankgw/"  # nobody listens: callbacks are not the point


@pytest.fixture(scope="module")
def sim() -> Iterator[BankGatewaySimulator]:
    s = BankGatewaySimulator().start()
    yield s
    s.stop()


@pytest.fixture
def bank(sim) -> Iterator[BankGatewaySimulator]:
    sim.faults.reset()
    sim.forge_answers.clear()
    sim.scripted_transfer.clear()
    real_clock = sim.clock
    sim.clock = datetime.fromisoformat(AS_OF).timestamp
    yield sim
    sim.clock = real_clock
    sim.faults.reset()
    sim.forge_answers.clear()
    sim.scripted_transfer.clear()


@pytest.fixture
def merchant(bank) -> Merchant:
    return bank.new_merchant(balance_minor=OPENING)


@pytest.fixture
def adapter(bank, merchant) -> BankGatewayAdapter:
    acc = bank.account_for(merchant)
    return BankGatewayAdapter(
        AccountConfig(
            account_id=1,
            code="bankgw",
            merchant_no=acc.merchant_no,
            base_url=acc.base_url,
            currency=acc.currency,
            credentials=acc.credentials,
        )
    )


def cny(minor: int) -> Money:
    return Money(minor, "CNY")


def _paid(adapter: BankGatewayAdapter, bank: BankGatewaySimulator, minor: int) -> tuple[str, str]:
    out_trade_no = f"BAL-{uuid.uuid4().hex[:12]}"
    created = adapter.create(CreateOrder(out_trade_no, cny(minor), "Game card", NOTIFY_URL, "", "127.0.0.1", "bank"))
    bank.pay(out_trade_no)
    return out_trade_no, created.provider_trade_no


def test_the_bank_reports_a_balance():
    assert Capability.BALANCE in BankGatewayAdapter.capabilities


def test_the_balance_is_what_the_bank_holds_after_a_payment_and_a_refund(adapter, bank, merchant):
    # Given 100.00 paid (0.6 % fee: 0.60) and 30.00 of it refunded (0.18 of the fee given back)
    out_trade_no, bank_ref = _paid(adapter, bank, 100_00)
    refund = RefundRequest("RF-" + out_trade_no, out_trade_no, bank_ref, cny(30_00), cny(100_00), "", "")
    assert adapter.refund(refund).status == "succeeded"

    balance = adapter.balance()

    held = OPENING + 100_00 - 60 - (30_00 - 18)
    assert balance == ChannelBalance(
        available=cny(held), pending=cny(0), as_of=datetime.fromisoformat(AS_OF), provider_status="Balance"
    )
    assert bank.account_balance(merchant.merchant_id) == {"available": held, "pending": 0}


def test_a_transfer_not_final_is_reserved_as_pending_and_leaves_once_settled(adapter, bank, merchant):
    bank.scripted_transfer.append(HOLD)
    payout = PayoutRequest("PO-" + uuid.uuid4().hex[:10], cny(12_000), PAYEE, "Zhang San", "settle")
    assert adapter.payout(payout).status == "pending"

    assert (adapter.balance().available, adapter.balance().pending) == (cny(OPENING - 12_000), cny(12_000))

    bank.settle_transfer(payout.payout_no)
    assert (adapter.balance().available, adapter.balance().pending) == (cny(OPENING - 12_000), cny(0))


@pytest.mark.parametrize("forgery", ["tampered", "bad_key", "unsigned"])
def test_a_forged_answer_is_unknown_never_a_balance(adapter, bank, forgery):
    bank.forge_answers.append(forgery)

    with pytest.raises(Unknown) as exc:
        adapter.balance()

    assert exc.value.code == "bad_signature"


def test_a_failing_bank_is_retryable_a_read_moved_nothing(adapter, bank):
    bank.faults.fail_5xx = 1

    with pytest.raises(Retryable):
        adapter.balance()

    assert adapter.balance().available == cny(OPENING)


def test_a_currency_the_account_does_not_hold_is_refused(adapter):
    other = BankGatewayAdapter(replace(adapter.account, currency="USD"))

    with pytest.raises(Terminal):
        other.balance()
