"""Alipay 分账 (royalty) against the simulator over real HTTP: receivers bound, a trade frozen for royalty at
creation, alipay.trade.order.settle executed once per out_request_no within the 30 % ratio, its async outcome by
settle.query and the signed settle notify, and shares taken back through a refund's refund_royalty_parameters."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from core.money import Money
from payments.channels.alipay.adapter import AlipayAdapter
from payments.channels.base import (
    AccountConfig,
    Capability,
    CreateOrder,
    Inbound,
    NotificationInvalid,
    RefundRequest,
    RefundState,
    SplitReceiver,
    SplitRequest,
    SplitReturnRequest,
    SplitState,
    Terminal,
    Unknown,
)
from payments.simulators.alipay import AlipaySimulator

AGENT_ID, AGENT_NAME = "2088301234567890", "王五"
PLATFORM_LOGIN, PLATFORM_NAME = "platform@example.com", "平台有限公司"
STRANGER_ID = "2088309999999999"
TOTAL = 100_00  # 100.00 yuan trades: at most 30.00 may be split
NOTIFY_URL = "http://127.0.0.1:9/alipay/notify"  # nothing listens: the attempt (and what it sent) is recorded


@pytest.fixture(scope="module")
def sim() -> Iterator[AlipaySimulator]:
    simulator = AlipaySimulator().start()
    simulator.account()
    yield simulator
    simulator.stop()


@pytest.fixture(autouse=True)
def _fresh(sim):
    yield
    sim.faults.reset()
    sim.tamper_answers = 0
    sim.settle_at_once = True


def _config(sim: AlipaySimulator, *, timeouts=(2.0, 8.0)) -> AccountConfig:
    account = sim.account()
    return AccountConfig(
        account_id=1,
        code="alipay",
        merchant_no=account.merchant_no,
        base_url=account.base_url,
        currency="CNY",
        credentials=account.credentials,
        timeouts=timeouts,
    )


@pytest.fixture
def adapter(sim) -> AlipayAdapter:
    return AlipayAdapter(_config(sim))


def _agent(minor: int = 20_00) -> SplitReceiver:
    return SplitReceiver(AGENT_ID, "userId", AGENT_NAME, Money(minor, "CNY"), "agent commission")


def _platform(minor: int = 9_00) -> SplitReceiver:
    return SplitReceiver(PLATFORM_LOGIN, "loginName", PLATFORM_NAME, Money(minor, "CNY"), "platform fee")


@pytest.fixture
def bound(adapter) -> None:
    adapter.split_bind(_agent())
    adapter.split_bind(_platform())


def _paid_trade(sim: AlipaySimulator, adapter: AlipayAdapter, *, split: bool = True) -> tuple[str, str]:
    no = f"T{uuid.uuid4().hex[:16]}"
    order = CreateOrder(no, Money(TOTAL, "CNY"), "礼品卡", NOTIFY_URL, "", "127.0.0.1", "alipay", split=split)
    adapter.create(order)
    sim.pay(no)
    trade = sim.trade_for(no)
    assert trade is not None
    return no, trade["trade_no"]


def _split(out_trade_no: str, trade_no: str, *receivers: SplitReceiver, no: str = "", finish: bool = True):
    return SplitRequest(
        split_no=no or f"S{uuid.uuid4().hex[:16]}",
        out_trade_no=out_trade_no,
        provider_trade_no=trade_no,
        receivers=receivers or (_agent(), _platform()),
        finish=finish,
    )


def _settle_notifies(sim: AlipaySimulator, out_trade_no: str) -> list[dict[str, str]]:
    trade = sim.trade_for(out_trade_no) or {}
    return [
        a["params"]
        for a in trade.get("notify_attempts", [])
        if a.get("params", {}).get("msg_method") == "alipay.trade.order.settle.notify"
    ]


def _wait_for_notify(sim: AlipaySimulator, out_trade_no: str) -> dict[str, str]:
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        if found := _settle_notifies(sim, out_trade_no):
            return found[0]
        time.sleep(0.02)
    raise AssertionError("no settle notify was sent")


def test_capability_split_is_declared():
    assert Capability.SPLIT in AlipayAdapter.capabilities


def test_bind_then_split_two_receivers_with_finish_succeeds_with_exact_amounts(sim, adapter, bound):
    assert {("userId", AGENT_ID), ("loginName", PLATFORM_LOGIN)} <= set(sim.bound_receivers())
    no, trade_no = _paid_trade(sim, adapter)
    assert sim.split_ledger(no)["royalty_freeze"] is True
    sim.settle_at_once = False
    request = _split(no, trade_no)

    accepted = adapter.split(request)
    assert accepted.status == SplitState.PENDING and accepted.provider_split_no
    assert [r.status for r in accepted.receivers] == [SplitState.PENDING, SplitState.PENDING]
    ledger = sim.split_ledger(no)
    assert (ledger["split"], ledger["frozen"], ledger["released"], ledger["received"]) == (29_00, 71_00, 0, {})
    settle = ledger["settles"][request.split_no]
    assert settle["finish"] is True
    assert [(d["trans_in_type"], d["trans_in"], d["amount_minor"]) for d in settle["details"]] == [
        ("userId", AGENT_ID, 20_00),
        ("loginName", PLATFORM_LOGIN, 9_00),
    ]
    pending = adapter.split_query(request)
    assert pending is not None and pending.status == SplitState.PENDING

    sim.settle_split(request.split_no)
    done = adapter.split_query(request)
    assert done is not None and done.status == SplitState.SUCCEEDED
    assert {(r.account, r.amount, r.status) for r in done.receivers} == {
        (AGENT_ID, Money(20_00, "CNY"), SplitState.SUCCEEDED),
        (PLATFORM_LOGIN, Money(9_00, "CNY"), SplitState.SUCCEEDED),
    }
    ledger = sim.split_ledger(no)
    assert ledger["received"] == {AGENT_ID: 20_00, PLATFORM_LOGIN: 9_00}
    assert (ledger["released"], ledger["frozen"]) == (71_00, 0)

    # The settle notify went to the trade's notify URL, signed, and says the same.
    params = _wait_for_notify(sim, no)
    seen = adapter.verify_split_notification(Inbound(params))
    assert seen.split_no == request.split_no and seen.provider_split_no == accepted.provider_split_no
    assert seen.status == SplitState.SUCCEEDED and {r.amount for r in seen.receivers} == {
        Money(20_00, "CNY"),
        Money(9_00, "CNY"),
    }


def test_the_same_split_no_twice_executes_once_and_answers_the_same(sim, adapter, bound):
    no, trade_no = _paid_trade(sim, adapter)
    request = _split(no, trade_no)
    first, second = adapter.split(request), adapter.split(request)
    assert first == second and first.provider_split_no
    assert len(sim.executed_settles(request.split_no)) == 1
    assert sim.split_ledger(no)["received"] == {AGENT_ID: 20_00, PLATFORM_LOGIN: 9_00}


def test_timeout_is_unknown_and_the_query_finds_the_split_executed_once(sim, bound):
    adapter = AlipayAdapter(_config(sim, timeouts=(1.0, 0.3)))
    no, trade_no = _paid_trade(sim, adapter)
    request = _split(no, trade_no)
    sim.faults.timeout, sim.faults.hang_seconds = 1, 1.0
    with pytest.raises(Unknown) as exc:
        adapter.split(request)
    assert exc.value.code == "timeout"
    found = adapter.split_query(request)
    assert found is not None and found.status == SplitState.SUCCEEDED
    assert len(sim.executed_settles(request.split_no)) == 1
    assert sim.split_ledger(no)["received"] == {AGENT_ID: 20_00, PLATFORM_LOGIN: 9_00}


def test_query_of_a_split_alipay_never_accepted_is_none(sim, adapter):
    no, trade_no = _paid_trade(sim, adapter)
    assert adapter.split_query(_split(no, trade_no)) is None


def test_receiver_not_bound_fails_with_alipays_reason_and_moves_nothing(sim, adapter, bound):
    no, trade_no = _paid_trade(sim, adapter)
    stranger = SplitReceiver(STRANGER_ID, "userId", "陌生人", Money(5_00, "CNY"))
    request = _split(no, trade_no, _agent(), stranger)
    result = adapter.split(request)
    assert result.status == SplitState.FAILED and result.provider_status == "ACQ.ROYALTY_RECEIVER_NOT_BIND"
    assert all(r.status == SplitState.FAILED for r in result.receivers)
    assert "ACQ.ROYALTY_RECEIVER_NOT_BIND" in result.receivers[0].failure_reason
    ledger = sim.split_ledger(no)
    assert (ledger["split"], ledger["frozen"], ledger["received"]) == (0, TOTAL, {})
    assert sim.executed_settles(request.split_no) == []


def test_split_above_the_30_percent_ratio_fails_and_moves_nothing(sim, adapter, bound):
    no, trade_no = _paid_trade(sim, adapter)
    request = _split(no, trade_no, _agent(21_00), _platform(9_01))  # 30.01 of 100.00
    result = adapter.split(request)
    assert result.status == SplitState.FAILED and result.provider_status == "ACQ.ALLOC_AMOUNT_VALIDATE_ERROR"
    assert "分账比例超限" in result.receivers[0].failure_reason
    assert sim.split_ledger(no)["split"] == 0 and sim.executed_settles(request.split_no) == []
    # Exactly 30 % is allowed.
    ok = adapter.split(_split(no, trade_no, _agent(21_00), _platform(9_00)))
    assert ok.status == SplitState.PENDING and sim.split_ledger(no)["received"] == {
        AGENT_ID: 21_00,
        PLATFORM_LOGIN: 9_00,
    }


def test_a_trade_not_created_splittable_cannot_be_split(sim, adapter, bound):
    no, trade_no = _paid_trade(sim, adapter, split=False)
    assert sim.split_ledger(no)["royalty_freeze"] is False
    request = _split(no, trade_no)
    with pytest.raises(Terminal) as exc:
        adapter.split(request)
    assert exc.value.code == "acq.trade_not_allow_settle"
    assert sim.executed_settles(request.split_no) == [] and sim.split_ledger(no)["received"] == {}


def test_refund_then_return_a_share_once_per_return_no_and_never_above_it(sim, adapter, bound):
    no, trade_no = _paid_trade(sim, adapter)
    split = _split(no, trade_no)
    assert adapter.split(split).provider_split_no
    # The merchant's own part (71.00) is refunded with a plain refund; it cannot refund more than it kept.
    refund = RefundRequest(f"R{uuid.uuid4().hex[:12]}", no, trade_no, Money(71_00, "CNY"), Money(TOTAL, "CNY"), "", "")
    with pytest.raises(Terminal):
        adapter.refund(RefundRequest(**{**refund.__dict__, "amount": Money(71_01, "CNY")}))
    assert adapter.refund(refund).status == RefundState.SUCCEEDED

    back = SplitReturnRequest(f"B{uuid.uuid4().hex[:12]}", split.split_no, "", no, trade_no, _agent(20_00))
    first = adapter.split_return(back)
    assert first.status == SplitState.SUCCEEDED and first.amount == Money(20_00, "CNY")
    again = adapter.split_return(back)
    assert again.status == SplitState.SUCCEEDED
    ledger = sim.split_ledger(no)
    assert ledger["returned"] == {AGENT_ID: 20_00} and ledger["refunded"] == 91_00
    royalty = (sim.trade_for(no) or {})["refunds"][back.return_no]["royalty"]
    assert royalty == [
        {"trans_out": AGENT_ID, "trans_out_type": "userId", "amount_minor": 20_00, "desc": "agent commission"}
    ]

    above = SplitReturnRequest(f"B{uuid.uuid4().hex[:12]}", split.split_no, "", no, trade_no, _platform(9_01))
    refused = adapter.split_return(above)
    assert refused.status == SplitState.FAILED and "ACQ.ROYALTY_RETURN_AMOUNT_EXCEED" in refused.failure_reason
    ledger = sim.split_ledger(no)
    assert ledger["returned"] == {AGENT_ID: 20_00} and ledger["refunded"] == 91_00
    assert above.return_no not in (sim.trade_for(no) or {})["refunds"]


def test_a_tampered_settle_answer_is_refused(sim, adapter, bound):
    no, trade_no = _paid_trade(sim, adapter)
    sim.tamper_answers = 1
    with pytest.raises(Unknown) as exc:
        adapter.split(_split(no, trade_no))
    assert exc.value.code == "bad_signature"


def test_a_tampered_settle_notify_is_refused(sim, adapter, bound):
    no, trade_no = _paid_trade(sim, adapter)
    adapter.split(_split(no, trade_no))
    params = dict(_wait_for_notify(sim, no))
    params["biz_content"] = params["biz_content"].replace('"state":"SUCCESS"', '"state":"FAIL"', 1)
    with pytest.raises(NotificationInvalid) as exc:
        adapter.verify_split_notification(Inbound(params))
    assert exc.value.code == "bad_signature"


def test_create_freezes_the_trade_for_royalty_in_precreate_and_page_pay(sim, adapter):
    no = f"T{uuid.uuid4().hex[:16]}"
    order = CreateOrder(no, Money(TOTAL, "CNY"), "礼品卡", NOTIFY_URL, "", "127.0.0.1", "alipay", split=True)
    created = adapter.create(order)
    query = parse_qs(urlsplit(created.pay_url).query)
    assert json.loads(query["biz_content"][0])["extend_params"] == {"royalty_freeze": "true"}
    assert sim.split_ledger(no)["royalty_freeze"] is True


def test_a_receiver_failing_after_acceptance_fails_the_split_and_keeps_its_share_frozen(sim, adapter, bound):
    no, trade_no = _paid_trade(sim, adapter)
    sim.settle_at_once = False
    request = _split(no, trade_no, finish=False)
    assert adapter.split(request).status == SplitState.PENDING
    sim.settle_split(request.split_no, failed={PLATFORM_LOGIN: ("RECEIVE_ACCOUNT_ERROR", "收款账户状态异常")})
    found = adapter.split_query(request)
    assert found is not None and found.status == SplitState.FAILED
    by_account = {r.account: r for r in found.receivers}
    assert by_account[AGENT_ID].status == SplitState.SUCCEEDED
    assert by_account[PLATFORM_LOGIN].failure_reason == "RECEIVE_ACCOUNT_ERROR: 收款账户状态异常"
    ledger = sim.split_ledger(no)
    assert (ledger["received"], ledger["split"], ledger["frozen"], ledger["released"]) == (
        {AGENT_ID: 20_00},
        20_00,
        80_00,
        0,
    )
