"""WeChat Pay's account balance (GET /v3/merchant/fund/balance/{BASIC,OPERATION}) through the adapter against the
simulator over real HTTP: signed answers, what the simulator holds after a paid trade, a refund, a transfer and a
trade frozen for profit sharing; a forged signature and a 5xx are never read as a balance."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
from payments.channels.wechatpay.adapter import WechatPayAdapter
from payments.simulators.wechatpay import WechatPaySimulator

OPERATING = 2_000_00


@pytest.fixture
def sim() -> Iterator[WechatPaySimulator]:
    # One merchant per test: the basic account holds everything the merchant was ever paid.
    s = WechatPaySimulator().start()
    s.set_balance(OPERATING)
    yield s
    s.stop()


@pytest.fixture
def adapter(sim: WechatPaySimulator) -> WechatPayAdapter:
    account = sim.account()
    return WechatPayAdapter(
        AccountConfig(
            account_id=31,
            code="wechatpay",
            merchant_no=account.merchant_no,
            base_url=account.base_url,
            currency="CNY",
            credentials=account.credentials,
        )
    )


def cny(minor: int) -> Money:
    return Money(minor, "CNY")


_seq = iter(range(10**6))


def _paid(adapter: WechatPayAdapter, sim: WechatPaySimulator, minor: int, *, split: bool = False) -> str:
    out_trade_no = f"BAL{next(_seq):08d}"
    adapter.create(
        CreateOrder(
            out_trade_no, cny(minor), "点卡", "http://127.0.0.1:9/notify", "", "127.0.0.1", "wxpay", split=split
        )
    )
    sim.faults.drop_notify = 1  # nobody listens at the notify_url; the payment stands anyway
    sim.pay(out_trade_no)
    return out_trade_no


def test_wechat_pay_reports_a_balance():
    assert Capability.BALANCE in WechatPayAdapter.capabilities


def test_the_balance_is_both_accounts_after_a_paid_trade_and_a_refund(adapter, sim):
    # Given a trade of 100.00 paid and 30.00 of it refunded
    out_trade_no = _paid(adapter, sim, 100_00)
    refund = RefundRequest("RF" + out_trade_no, out_trade_no, "", cny(30_00), cny(100_00), "", "")
    assert adapter.refund(refund).status == "succeeded"

    # When the shop asks WeChat Pay
    balance = adapter.balance()

    # Then the basic account holds the trade less its fee (0.60) and the refund less the fee it gave back (0.18),
    # the operating account what it held; nothing is pending
    basic = 100_00 - 60 - (30_00 - 18)
    assert sim.account_balance("BASIC") == {"available_amount": basic, "pending_amount": 0}
    assert balance == ChannelBalance(
        available=cny(basic + OPERATING), pending=cny(0), provider_status="BASIC+OPERATION"
    )


def test_a_transfer_leaves_the_operating_account_and_a_profit_sharing_trade_is_pending(adapter, sim):
    payout = PayoutRequest("PO20261203BAL1", cny(7_00), "oPayeeBalance01", "张三", "payout")
    assert adapter.payout(payout).status == "pending"  # WAIT_USER_CONFIRM: the money left the account already
    _paid(adapter, sim, 50_00, split=True)  # frozen until it is split or unfrozen

    balance = adapter.balance()

    assert balance.available == cny(OPERATING - 7_00)
    assert balance.pending == cny(50_00 - 30)
    assert sim.account_balance("BASIC")["pending_amount"] == 50_00 - 30


def test_an_answer_whose_signature_does_not_verify_is_unknown(adapter, sim):
    sim.balance_bad_signature = True

    with pytest.raises(Unknown) as exc:
        adapter.balance()

    assert exc.value.code == "bad_signature"


def test_a_5xx_is_retryable_a_read_moved_nothing(adapter, sim):
    sim.faults.fail_5xx = 1

    with pytest.raises(Retryable) as exc:
        adapter.balance()

    assert exc.value.code == "http_5xx"
    assert adapter.balance().available == cny(OPERATING)
