"""WeChat Pay's daily trade bill (交易账单) through the adapter against the simulator over real HTTP: signed
tradebill answer, signed download, SHA1 check, streamed parse of the back-ticked CSV and its summary."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from core.money import Money
from payments.channels.base import (
    AccountConfig,
    Capability,
    CreateOrder,
    RefundRequest,
    Retryable,
    StatementKind,
    StatementLine,
    Terminal,
    Unknown,
)
from payments.channels.wechatpay import wire
from payments.channels.wechatpay.adapter import WechatPayAdapter
from payments.simulators.wechatpay import WechatPaySimulator

CNY = "CNY"


@pytest.fixture(scope="module")
def sim() -> Iterator[WechatPaySimulator]:
    s = WechatPaySimulator().start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _clean(sim: WechatPaySimulator) -> Iterator[None]:
    sim.faults.reset()
    sim.statement_reset()
    yield
    sim.faults.reset()
    sim.statement_reset()


@pytest.fixture(scope="module")
def config(sim: WechatPaySimulator) -> AccountConfig:
    account = sim.account()
    return AccountConfig(
        account_id=21,
        code="wechatpay",
        merchant_no=account.merchant_no,
        base_url=account.base_url,
        currency=CNY,
        credentials=account.credentials,
    )


@pytest.fixture
def adapter(config: AccountConfig) -> WechatPayAdapter:
    return WechatPayAdapter(config)


def _today() -> date:
    return datetime.now(wire.BEIJING).date()


_seq = iter(range(10**6))


def _paid(adapter: WechatPayAdapter, sim: WechatPaySimulator, minor: int) -> str:
    out_trade_no = f"ST{next(_seq):08d}{id(sim) % 10**6:06d}"
    adapter.create(
        CreateOrder(
            out_trade_no=out_trade_no,
            amount=Money(minor, CNY),
            subject="点卡, 100 元",  # a comma: the CSV must quote it
            notify_url="http://127.0.0.1:9/notify",
            return_url="",
            client_ip="127.0.0.1",
            method="wxpay",
        )
    )
    sim.faults.drop_notify = 1  # nobody listens at the notify_url; the payment stands anyway
    sim.pay(out_trade_no)
    return out_trade_no


@pytest.fixture(scope="module")
def day_trades(sim: WechatPaySimulator, config: AccountConfig) -> dict[str, str]:
    """Today's recorded trades: three paid, one of them refunded in part (4.00 of 99.99)."""
    adapter = WechatPayAdapter(config)
    a, b, c = _paid(adapter, sim, 1000), _paid(adapter, sim, 9999), _paid(adapter, sim, 1)
    refund_no = f"RF{a}"
    adapter.refund(
        RefundRequest(
            refund_no=refund_no,
            out_trade_no=b,
            provider_trade_no="",
            amount=Money(400, CNY),
            total=Money(9999, CNY),
            reason="",
            notify_url="",
        )
    )
    return {"a": a, "b": b, "c": c, "refund": refund_no}


def _by_ref(lines: list[StatementLine]) -> dict[str, list[StatementLine]]:
    found: dict[str, list[StatementLine]] = {}
    for line in lines:
        found.setdefault(line.our_ref, []).append(line)
    return found


def test_capability_present():
    assert Capability.STATEMENT in WechatPayAdapter.capabilities


def test_day_parses_to_exactly_its_trades_and_refund(adapter, sim, day_trades):
    statement = adapter.statement(_today())
    lines = list(statement.lines)

    assert {line.our_ref for line in lines} == {day_trades["a"], day_trades["b"], day_trades["c"], day_trades["refund"]}
    assert len(lines) == 4
    by_ref = {line.our_ref: line for line in lines}
    for key, minor, fee in (("a", 1000, 6), ("b", 9999, 60), ("c", 1, 0)):
        line = by_ref[day_trades[key]]
        trade = sim.trade_for(day_trades[key])
        assert trade is not None
        assert line.kind == StatementKind.PAYMENT
        assert line.provider_ref == trade["provider_trade_no"]
        assert line.amount == Money(minor, CNY)
        assert line.fee == Money(fee, CNY)  # 0.60 % rounded half up
        assert line.status == "SUCCESS"
        assert line.occurred_at == datetime.fromisoformat(trade["success_time"])
        assert line.trade_ref == ""
    refund = by_ref[day_trades["refund"]]
    b_trade = sim.trade_for(day_trades["b"])
    assert b_trade is not None
    assert refund.kind == StatementKind.REFUND
    assert refund.provider_ref == b_trade["refunds"][0]["refund_id"]
    assert refund.trade_ref == b_trade["provider_trade_no"]
    assert refund.amount == Money(400, CNY)
    assert refund.fee == Money(2, CNY)  # the fee given back, stated -0.02 in the file
    assert refund.status == "SUCCESS"
    assert [line.line_no for line in lines] == [2, 3, 4, 5]

    totals = statement.totals
    assert totals is not None
    assert totals.count == len(lines)
    payments = [line for line in lines if line.kind == StatementKind.PAYMENT]
    refunds = [line for line in lines if line.kind == StatementKind.REFUND]
    assert totals.amount == Money(sum(p.amount.amount_minor for p in payments) - 400, CNY) == Money(10600, CNY)
    assert totals.fee == Money(
        sum(p.fee.amount_minor for p in payments) - sum(r.fee.amount_minor for r in refunds), CNY
    )
    assert len(statement.source_hash) == 64


def test_plain_file_parses_like_the_gzip_one(adapter, day_trades):
    gz = list(adapter.statement(_today()).lines)
    adapter.statement_tar_type = ""
    plain = adapter.statement(_today())
    assert list(plain.lines) == gz
    assert plain.totals is not None and plain.totals.count == 4


def test_injected_discrepancies_show_in_the_parsed_lines(adapter, sim, day_trades):
    a, b, c = day_trades["a"], day_trades["b"], day_trades["c"]
    sim.statement_omit = {a}
    sim.statement_override = {b: {"amount": 9000, "fee": 54, "status": "REVOKED"}}
    sim.statement_duplicate = {c}
    sim.statement_extra = [
        {"our_ref": "NEVERSEEN01", "provider_ref": "4200000000999", "amount": 12345, "fee": 74, "status": "SUCCESS"}
    ]

    statement = adapter.statement(_today())
    found = _by_ref(list(statement.lines))

    assert a not in found
    assert len(found[b]) == 1
    assert found[b][0].amount == Money(9000, CNY)
    assert found[b][0].fee == Money(54, CNY)
    assert found[b][0].status == "REVOKED"
    assert found[b][0].kind == StatementKind.OTHER  # not a SUCCESS payment any more
    assert len(found[c]) == 2 and replace(found[c][1], line_no=found[c][0].line_no) == found[c][0]
    unknown = found["NEVERSEEN01"]
    assert len(unknown) == 1
    assert (unknown[0].kind, unknown[0].provider_ref, unknown[0].amount, unknown[0].fee, unknown[0].status) == (
        StatementKind.PAYMENT,
        "4200000000999",
        Money(12345, CNY),
        Money(74, CNY),
        "SUCCESS",
    )
    assert found[day_trades["refund"]][0].kind == StatementKind.REFUND
    assert statement.totals is not None
    assert statement.totals.count == 5  # the bill adds up its own rows: b, c twice, the unknown one, the refund


def test_corrupted_file_raises_unknown(adapter, sim, day_trades):
    sim.statement_corrupt = True
    with pytest.raises(Unknown) as exc:
        adapter.statement(_today())
    assert exc.value.code == "bad_hash"


def test_unsigned_tradebill_answer_raises_unknown(adapter, sim, day_trades):
    sim.statement_bad_signature = True
    with pytest.raises(Unknown) as exc:
        adapter.statement(_today())
    assert exc.value.code == "bad_signature"


def test_day_not_produced_yet_is_retryable(adapter, sim, day_trades):
    with pytest.raises(Retryable) as exc:
        adapter.statement(_today() + timedelta(days=1))
    assert exc.value.code == "not_ready"
    sim.statements_pending = {_today()}
    with pytest.raises(Retryable):
        adapter.statement(_today())


def test_day_without_a_bill_is_retryable(adapter):
    with pytest.raises(Retryable) as exc:
        adapter.statement(_today() - timedelta(days=40))
    assert exc.value.code == "not_ready"


def test_provider_5xx_is_retryable(adapter, sim):
    sim.faults.fail_5xx = 1
    with pytest.raises(Retryable):
        adapter.statement(_today())


def test_synthetic_20000_lines_stream_in_bounded_memory(adapter, sim):
    day = _today() - timedelta(days=3)
    expected = sim.statement_synthetic(day, 20_000)

    tracemalloc.start()
    try:
        statement = adapter.statement(day)
        count = amount = fee = 0
        for line in statement.lines:
            count += 1
            amount += line.amount.amount_minor
            fee += line.fee.amount_minor
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == 20_000
    assert statement.totals is not None
    assert statement.totals.count == expected["count"] == count
    assert statement.totals.amount == Money(expected["amount"], CNY) == Money(amount, CNY)
    assert statement.totals.fee == Money(expected["fee"], CNY) == Money(fee, CNY)
    assert peak < 30 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_refused_request_is_terminal(config, sim):
    wrong = replace(config, credentials={**config.credentials, "mch_serial_no": "0" * 40})
    with pytest.raises(Terminal) as exc:
        WechatPayAdapter(wrong).statement(_today())
    assert exc.value.code == "refused"


def test_timeout_on_a_bill_is_retryable(config, sim, day_trades):
    sim.faults.timeout = 1
    sim.faults.hang_seconds = 0.6
    with pytest.raises(Retryable) as exc:
        WechatPayAdapter(replace(config, timeouts=(1.0, 0.3))).statement(_today())
    assert exc.value.code == "timeout"


@pytest.mark.parametrize(
    ("text", "fen"),
    [("12.34", 1234), ("-0.01", -1), ("0.00000", 0), ("7", 700), ("1.5", 150), ("1.005", None), ("1,00", None)],
)
def test_bill_amounts_are_exact_fen(text, fen):
    assert wire.bill_fen(text) == fen


def test_expired_download_link_is_retryable(adapter, sim, day_trades):
    sim.bill_link_seconds = -1
    with pytest.raises(Retryable) as exc:
        adapter.statement(_today())
    assert exc.value.code == "download_refused"
