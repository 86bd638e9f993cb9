"""The Alipay daily trade bill against the simulator over real HTTP: the signed download-URL query, the GBK ZIP,
lines parsed as they stream, injected discrepancies, corrupt files, days not produced yet, memory bound."""

from __future__ import annotations

import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from core.money import Money
from payments.channels.alipay import wire
from payments.channels.alipay.adapter import AlipayAdapter
from payments.channels.base import (
    AccountConfig,
    Capability,
    CreateOrder,
    RefundRequest,
    Retryable,
    StatementKind,
    StatementLine,
    StatementTotals,
    Terminal,
    Unknown,
)
from payments.simulators.alipay import AlipaySimulator


@pytest.fixture
def sim() -> Iterator[AlipaySimulator]:
    # One Alipay per test: a day's bill is all that the account recorded that day.
    simulator = AlipaySimulator().start()
    simulator.account()
    yield simulator
    simulator.stop()


@pytest.fixture
def adapter(sim) -> AlipayAdapter:
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


def _today() -> date:
    # Alipay cuts its bills by Beijing days.
    return datetime.now(wire.TIME_ZONE).date()


def _paid(adapter: AlipayAdapter, sim: AlipaySimulator, minor: int) -> dict:
    out_trade_no = f"T-{uuid.uuid4().hex[:12]}"
    adapter.create(CreateOrder(out_trade_no, Money(minor, "CNY"), "月卡", "", "", "203.0.113.9", "alipay"))
    sim.pay(out_trade_no)
    return sim.trade_for(out_trade_no)


@pytest.fixture
def day_with_trades(adapter, sim) -> dict:
    """Three paid trades today, one refunded in part; the bill published early (it is T+1 on Alipay)."""
    trades = [_paid(adapter, sim, minor) for minor in (9_90, 123_45, 50_00)]
    refunded = trades[1]
    adapter.refund(
        RefundRequest(
            refund_no="RF-1",
            out_trade_no=refunded["out_trade_no"],
            provider_trade_no=refunded["trade_no"],
            amount=Money(23_45, "CNY"),
            total=Money(123_45, "CNY"),
            reason="",
            notify_url="",
        )
    )
    sim.publish_statement(_today())
    return {"trades": trades, "refunded": refunded}


def _by_ref(lines: list[StatementLine]) -> dict[str, list[StatementLine]]:
    found: dict[str, list[StatementLine]] = {}
    for line in lines:
        found.setdefault(line.our_ref, []).append(line)
    return found


def test_a_day_parses_to_exactly_its_trades_and_refund_with_matching_totals(adapter, sim, day_with_trades):
    statement = adapter.statement(_today())
    assert statement.totals is None  # known only once the summary has been read
    lines = list(statement.lines)

    trades, refunded = day_with_trades["trades"], day_with_trades["refunded"]
    got = sorted(
        (line.kind, line.our_ref, line.provider_ref, line.trade_ref, line.amount, line.fee, line.status)
        for line in lines
    )
    assert got == sorted(
        [
            *(
                (StatementKind.PAYMENT, t["out_trade_no"], t["trade_no"], "", Money(m, "CNY"), Money(f, "CNY"), "交易")
                for t, m, f in zip(trades, (9_90, 123_45, 50_00), (6, 74, 30), strict=True)
            ),
            (
                StatementKind.REFUND,
                "RF-1",
                refunded["trade_no"],
                refunded["trade_no"],
                Money(23_45, "CNY"),
                Money(14, "CNY"),
                "退款",
            ),
        ]
    )
    assert all(
        line.occurred_at.date() == _today() and line.occurred_at.utcoffset() == timedelta(hours=8) for line in lines
    )
    assert sorted(line.line_no for line in lines) == [6, 7, 8, 9]  # after 4 comment lines and the header
    assert statement.totals == StatementTotals(
        count=4, amount=Money(9_90 + 123_45 + 50_00 - 23_45, "CNY"), fee=Money(6 + 74 + 30 - 14, "CNY")
    )
    assert statement.totals.count == len(lines)
    assert len(statement.source_hash) == 64


def test_source_hash_is_the_sha256_of_the_file_as_served(adapter, sim, day_with_trades):
    statement = adapter.statement(_today())
    list(statement.lines)
    assert statement.source_hash == sim.served_bills[-1]
    assert len(sim.served_bills) == 1


def test_injected_discrepancies_show_up_as_parsed(adapter, sim, day_with_trades):
    first, second, third = (t["out_trade_no"] for t in day_with_trades["trades"])
    sim.statement_omit = {first}
    sim.statement_overrides = {second: {"amount_minor": 120_00, "fee_minor": 1}, "RF-1": {"status": "退款冻结"}}
    sim.statement_duplicates = {third}
    sim.statement_extra = [
        {"our_ref": "NEVER-SEEN", "provider_ref": "2026000022009999", "amount_minor": 77_00, "fee_minor": 46}
    ]

    statement = adapter.statement(_today())
    found = _by_ref(list(statement.lines))

    assert first not in found
    assert [(line.amount, line.fee) for line in found[second]] == [(Money(120_00, "CNY"), Money(1, "CNY"))]
    assert [(line.kind, line.status, line.amount) for line in found["RF-1"]] == [
        (StatementKind.OTHER, "退款冻结", Money(23_45, "CNY"))
    ]
    assert len(found[third]) == 2 and found[third][0].amount == found[third][1].amount == Money(50_00, "CNY")
    assert found[third][0].line_no != found[third][1].line_no
    [stranger] = found["NEVER-SEEN"]
    assert (stranger.kind, stranger.provider_ref, stranger.amount, stranger.fee, stranger.status) == (
        StatementKind.PAYMENT,
        "2026000022009999",
        Money(77_00, "CNY"),
        Money(46, "CNY"),
        "交易",
    )
    # The file is consistent with itself: its totals are those of the lines as written.
    assert statement.totals == StatementTotals(
        count=4, amount=Money(120_00 + 2 * 50_00 + 77_00, "CNY"), fee=Money(1 + 2 * 30 + 46 - 14, "CNY")
    )


def test_a_file_with_a_broken_crc_raises_unknown_before_any_line(adapter, sim, day_with_trades):
    sim.statement_corrupt = "bytes"
    with pytest.raises(Unknown) as caught:
        adapter.statement(_today())
    assert caught.value.code == "corrupt_file"


def test_a_file_whose_lines_do_not_add_up_raises_unknown_and_gives_no_totals(adapter, sim, day_with_trades):
    sim.statement_corrupt = "totals"
    statement = adapter.statement(_today())
    with pytest.raises(Unknown) as caught:
        list(statement.lines)
    assert caught.value.code == "totals_mismatch"
    assert statement.totals is None


def test_a_day_not_produced_yet_is_retryable(adapter, sim):
    tomorrow = _today() + timedelta(days=1)
    with pytest.raises(Retryable) as caught:
        adapter.statement(tomorrow)
    assert caught.value.code == "not_ready"


def test_an_expired_link_is_retryable(adapter, sim, day_with_trades):
    sim.bill_url_ttl = -1.0  # dead on arrival: the 30 s passed before the download
    with pytest.raises(Retryable) as caught:
        adapter.statement(_today())
    assert caught.value.code == "download_expired"


def test_an_unreachable_gateway_is_retryable_and_a_5xx_too(adapter, sim, day_with_trades):
    account = sim.account()
    dead = AlipayAdapter(
        AccountConfig(1, "alipay", account.merchant_no, "http://127.0.0.1:9", "CNY", account.credentials)
    )
    with pytest.raises(Retryable):
        dead.statement(_today())
    sim.faults.fail_5xx = 1
    with pytest.raises(Retryable):
        adapter.statement(_today())


def test_a_refused_request_is_terminal(sim):
    account = sim.account()
    # A key the simulator does not know for this app: the request's signature does not verify (40002).
    foreign_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    wrong = AlipayAdapter(
        AccountConfig(
            1,
            "alipay",
            account.merchant_no,
            account.base_url,
            "CNY",
            {
                "app_private_key": foreign_pem.decode(),
                "alipay_public_key": account.credentials["alipay_public_key"],
            },
        )
    )
    with pytest.raises(Terminal):
        wrong.statement(_today() - timedelta(days=1))


def test_a_synthetic_20000_line_bill_streams_in_bounded_memory(adapter, sim):
    day = _today() - timedelta(days=3)
    sim.statement_synthetic(day, 20_000)

    tracemalloc.start()
    try:
        statement = adapter.statement(day)
        count = total = 0
        for line in statement.lines:
            count += 1
            total += line.amount.amount_minor
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert count == 20_000
    assert statement.totals is not None
    assert statement.totals.count == 20_000 and statement.totals.amount == Money(total, "CNY")
    assert peak < 30 * 1024 * 1024


def test_statement_capability_is_declared():
    assert Capability.STATEMENT in AlipayAdapter.capabilities
