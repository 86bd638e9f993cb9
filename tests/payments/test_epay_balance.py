"""The epay panel's balance (api.php?act=query, `money`) through the adapter against the simulator over real HTTP:
what the panel holds after a paid order and a refunded one; a wrong key, an answer for another pid, an amount that
is not exact and a 5xx are never read as a balance (api.php signs no answer: the key in the request is its proof)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.money import Money
from payments.channels.base import (
    AccountConfig,
    Capability,
    ChannelBalance,
    CreateOrder,
    RefundRequest,
    Retryable,
    Terminal,
    Unknown,
)
from payments.channels.epay.adapter import EpayAdapter
from payments.simulators.epay import EpaySimulator

PID, KEY = "7002", "b" * 32


@pytest.fixture
def sim() -> Iterator[EpaySimulator]:
    s = EpaySimulator().start()
    s.add_merchant(PID, KEY)
    s.fee_rate_bp = 60
    yield s
    s.stop()


def _adapter(sim: EpaySimulator, *, pid: str = PID, key: str = KEY) -> EpayAdapter:
    return EpayAdapter(
        AccountConfig(
            account_id=1, code="epay", merchant_no=pid, base_url=sim.base_url, currency="CNY", credentials={"key": key}
        )
    )


def cny(minor: int) -> Money:
    return Money(minor, "CNY")


def _paid(adapter: EpayAdapter, sim: EpaySimulator, no: str, minor: int) -> None:
    adapter.create(CreateOrder(no, cny(minor), "Gift", "http://127.0.0.1:9/notify/epay/", "", "127.0.0.1", "alipay"))
    sim.faults.drop_notify = 1  # nobody listens: the order is paid all the same
    sim.pay(no)


def test_epay_reports_a_balance():
    assert Capability.BALANCE in EpayAdapter.capabilities


def test_the_balance_is_what_the_panel_holds_after_a_paid_and_a_refunded_order(sim):
    adapter = _adapter(sim)
    _paid(adapter, sim, "E-BAL-1", 100_00)
    _paid(adapter, sim, "E-BAL-2", 20_00)
    refund = RefundRequest("ER-BAL-2", "E-BAL-2", "", cny(20_00), cny(20_00), "", "")
    assert adapter.refund(refund).status == "succeeded"

    balance = adapter.balance()

    # The paid order left its getmoney (100.00 less 0.60); the refunded one took its own back.
    assert balance == ChannelBalance(available=cny(100_00 - 60), pending=None, provider_status="act=query")
    assert sim.merchant_money(PID) == 100_00 - 60


def test_a_wrong_key_is_refused(sim):
    with pytest.raises(Terminal):
        _adapter(sim, key="x" * 32).balance()


@pytest.mark.parametrize("forged", [{"pid": 9999}, {"money": "1.005"}, {"money": None}])
def test_an_answer_for_another_pid_or_without_an_exact_amount_is_unknown(sim, forged):
    sim.tamper_merchant_query = forged

    with pytest.raises(Unknown) as exc:
        _adapter(sim).balance()

    assert exc.value.code == "bad_response"


def test_a_5xx_is_retryable_a_read_moved_nothing(sim):
    adapter = _adapter(sim)
    sim.faults.fail_5xx = 1

    with pytest.raises(Retryable) as exc:
        adapter.balance()

    assert exc.value.code == "http_5xx"
    assert adapter.balance().available == cny(0)
