"""Alipay's account balance (alipay.data.bill.balance.query) through the adapter against the simulator over real
HTTP: the signed answer is what the simulator holds after a paid trade, a refund, a transfer and a royalty-frozen
trade; a tampered answer, an HTTP 500 and a refusal are never read as a balance."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from core.money import Money
from payments.channels.alipay.adapter import AlipayAdapter
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
from payments.simulators.alipay import AlipaySimulator

OPENING = 5_000_00


@pytest.fixture(scope="module")
def sim() -> Iterator[AlipaySimulator]:
    s = AlipaySimulator().start()
    s.account()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _fresh(sim: AlipaySimulator) -> Iterator[None]:
    sim.faults.reset()
    sim.tamper_answers = 0
    yield
    sim.faults.reset()
    sim.tamper_answers = 0


@pytest.fixture
def adapter(sim: AlipaySimulator) -> AlipayAdapter:
    account = sim.account()
    return AlipayAdapter(
        AccountConfig(
            account_id=1,
            code="alipay",
            merchant_no=account.merchant_no,
            base_url=account.base_url,
            currency="CNY",
            credentials=account.credentials,
        )
    )


def cny(minor: int) -> Money:
    return Money(minor, "CNY")


def _paid(adapter: AlipayAdapter, sim: AlipaySimulator, minor: int, *, split: bool = False) -> str:
    out_trade_no = f"B-{uuid.uuid4().hex[:12]}"
    adapter.create(CreateOrder(out_trade_no, cny(minor), "月卡", "", "", "203.0.113.9", "alipay", split=split))
    sim.pay(out_trade_no)
    return out_trade_no


def test_alipay_reports_a_balance():
    assert Capability.BALANCE in AlipayAdapter.capabilities


def test_the_balance_is_what_alipay_holds_after_a_paid_trade_and_a_refund(adapter, sim):
    # Given an app holding 5,000.00 to pay out of, a trade of 100.00 paid and 30.00 of it refunded
    sim.set_balance(OPENING)
    out_trade_no = _paid(adapter, sim, 100_00)
    refund = RefundRequest("R-" + out_trade_no, out_trade_no, "", cny(30_00), cny(100_00), "", "")
    assert adapter.refund(refund).status == "succeeded"

    # When the shop asks Alipay
    balance = adapter.balance()

    # Then the fee (0.60) is kept, the refund's share of it (0.18) came back, and nothing is frozen
    held = OPENING + 100_00 - 60 - 30_00 + 18
    assert balance == ChannelBalance(
        available=cny(held), pending=cny(0), provider_status="alipay.data.bill.balance.query"
    )
    assert sim.account_balance() == {"total": held, "available": held, "frozen": 0}


def test_a_transfer_leaves_the_balance_and_a_frozen_trade_is_reported_frozen(adapter, sim):
    sim.set_balance(OPENING)
    sim.add_payee("2088102146225135", "李四")
    before = adapter.balance().available
    payout = PayoutRequest("PO-" + uuid.uuid4().hex[:10], cny(12_34), "2088102146225135", "李四", "payout")
    assert adapter.payout(payout).status == "succeeded"
    _paid(adapter, sim, 50_00, split=True)  # frozen for royalty until it is settled or finished

    balance = adapter.balance()

    assert balance.available == before - cny(12_34)
    assert balance.pending == cny(50_00 - 30)
    assert sim.account_balance()["frozen"] == 50_00 - 30


def test_an_answer_changed_after_signing_is_unknown_never_a_balance(adapter, sim):
    sim.tamper_answers = 1

    with pytest.raises(Unknown) as exc:
        adapter.balance()

    assert exc.value.code == "bad_signature"


def test_a_5xx_is_retryable_a_read_moved_nothing(adapter, sim):
    sim.faults.fail_5xx = 1

    with pytest.raises(Retryable) as exc:
        adapter.balance()

    assert exc.value.code == "http_5xx"
    assert adapter.balance().available.currency == "CNY"  # the next ask is answered


def test_an_app_alipay_does_not_know_is_refused(sim):
    account = sim.account()
    stranger = AlipayAdapter(
        AccountConfig(
            account_id=2,
            code="alipay",
            merchant_no="2021009999999999",
            base_url=account.base_url,
            currency="CNY",
            credentials=account.credentials,
        )
    )

    with pytest.raises(Terminal):
        stranger.balance()
