"""The Stripe day's statement (balance transactions of one UTC day) through the adapter, against the Stripe simulator
over real HTTP: what was booked, the injected discrepancies, corrupt answers, incomplete days, streaming."""

from __future__ import annotations

import hashlib
import socket
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

import pytest
import requests
import time_machine

from core.money import Money
from payments.channels.base import (
    AccountConfig,
    Capability,
    CreateOrder,
    PayoutRequest,
    RefundRequest,
    Retryable,
    StatementKind,
    StatementLine,
    Terminal,
    Unknown,
)
from payments.channels.stripe import wire
from payments.channels.stripe.adapter import StripeAdapter
from payments.simulators.base import SimAccount
from payments.simulators.stripe import StripeSimulator

YESTERDAY = datetime.now(UTC).date() - timedelta(days=1)
NOON = datetime.combine(YESTERDAY, time(12), tzinfo=UTC)


@pytest.fixture(autouse=True)
def _the_day_after(request):
    """Every test reads "yesterday" from the following noon: YESTERDAY is fixed when the module is collected, so a
    run that crosses midnight UTC would otherwise see the charges already available (two days after booking)."""
    with time_machine.travel(NOON + timedelta(days=1), tick=True):
        yield


@pytest.fixture
def sim() -> Iterator[StripeSimulator]:
    s = StripeSimulator().start()
    yield s
    s.stop()


@pytest.fixture
def account(sim: StripeSimulator) -> SimAccount:
    return sim.account()


@pytest.fixture
def adapter(account: SimAccount) -> StripeAdapter:
    return StripeAdapter(_config(account))


def _config(account: SimAccount, *, base_url: str = "", **credentials: str) -> AccountConfig:
    return AccountConfig(
        account_id=1,
        code="stripe",
        merchant_no=account.merchant_no,
        base_url=base_url or account.base_url,
        currency=account.currency,
        credentials={**account.credentials, **credentials},
        timeouts=(2.0, 10.0),
    )


def _order(no: str, minor: int) -> CreateOrder:
    return CreateOrder(
        out_trade_no=no,
        amount=Money(minor, "CNY"),
        subject="Gift card",
        notify_url="http://127.0.0.1:9/notify/stripe/",
        return_url="http://shop.example/orders/S/",
        client_ip="127.0.0.1",
        method="card",
    )


@pytest.fixture
def day(adapter: StripeAdapter, sim: StripeSimulator) -> dict[str, str]:
    """Yesterday (UTC) at the simulator: S1 and S2 paid, S3 never paid, R1 refunds part of S1, P1 pays out.
    Returns the provider's ids by our number."""
    with time_machine.travel(NOON, tick=True):
        for no, minor in (("S1", 990), ("S2", 2_500), ("S3", 100)):
            adapter.create(_order(no, minor))
        sim.pay("S1")
        sim.pay("S2")
        refund = adapter.refund(
            RefundRequest(
                refund_no="R1",
                out_trade_no="S1",
                provider_trade_no="",
                amount=Money(500, "CNY"),
                total=Money(990, "CNY"),
                reason="buyer changed mind",
                notify_url="",
            )
        )
        sim.fund(100_000)
        payee = sim.connected_account()
        payout = adapter.payout(
            PayoutRequest(payout_no="P1", amount=Money(3_000, "CNY"), payee=payee, payee_name="M", remark="settle")
        )
    charge = {no: sim.trade_for(no)["intent"]["latest_charge"] for no in ("S1", "S2")}
    return {**charge, "R1": refund.provider_refund_no, "P1": payout.provider_payout_no}


def _key(line: StatementLine) -> tuple:
    return (line.kind, line.our_ref, line.provider_ref, line.amount.amount_minor, line.fee.amount_minor, line.status)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_statement_capability_is_declared():
    assert Capability.STATEMENT in StripeAdapter.capabilities


def test_a_day_parses_to_exactly_what_was_booked(adapter, sim, day):
    statement = adapter.statement(YESTERDAY)
    lines = list(statement.lines)

    fee_s1, fee_s2 = sim.fee_for(990), sim.fee_for(2_500)
    assert (fee_s1, fee_s2) == (59, 103)  # 2.9% rounded half up + 30
    # Charges wait two days to become available; refunds and transfers move the balance at once.
    assert sorted(map(_key, lines)) == sorted(
        [
            (StatementKind.PAYMENT, "S1", day["S1"], 990, fee_s1, "pending"),
            (StatementKind.PAYMENT, "S2", day["S2"], 2_500, fee_s2, "pending"),
            (StatementKind.REFUND, "R1", day["R1"], 500, 0, "available"),
            (StatementKind.PAYOUT, "P1", day["P1"], 3_000, 0, "available"),
        ]
    )
    refund = next(line for line in lines if line.kind is StatementKind.REFUND)
    assert refund.trade_ref == day["S1"]
    assert all(line.amount.currency == line.fee.currency == "CNY" for line in lines)
    assert all(line.occurred_at.date() == YESTERDAY and line.occurred_at.tzinfo is UTC for line in lines)
    assert [line.line_no for line in lines] == [1, 2, 3, 4]
    # Stripe has no control totals for this list; the hash is of the bytes Stripe sent.
    assert statement.totals is None
    start = int(NOON.replace(hour=0).timestamp())
    raw = requests.get(
        f"{sim.base_url}/v1/balance_transactions",
        params={"created[gte]": start, "created[lt]": start + 86_400, "limit": 100, "expand[]": "data.source"},
        headers={"Authorization": f"Bearer {adapter._secret_key}"},
        timeout=5,
    )
    assert statement.source_hash == hashlib.sha256(raw.content).hexdigest()


def test_the_other_days_are_not_in_it(adapter, day):
    assert list(adapter.statement(YESTERDAY - timedelta(days=1)).lines) == []


def test_pages_are_followed_by_cursor(adapter, day, monkeypatch):
    whole = [_key(line) for line in adapter.statement(YESTERDAY).lines]
    monkeypatch.setattr(wire, "STATEMENT_PAGE_LIMIT", 1)

    paged = [_key(line) for line in adapter.statement(YESTERDAY).lines]

    assert paged == whole and len(paged) == 4


def test_injected_discrepancies_show_in_the_parsed_lines(adapter, sim, day):
    sim.statement_omit = {"S2"}
    sim.statement_override = {"S1": {"amount": 999, "fee": 1, "status": "available"}}
    sim.statement_duplicate = {"R1"}
    sim.statement_extra = [
        {"our_ref": "GHOST-1", "provider_ref": "ch_ghost0001", "amount": 4_200, "fee": 152, "status": "available"}
    ]

    lines = list(adapter.statement(YESTERDAY).lines)

    by_ref: dict[str, list[StatementLine]] = {}
    for line in lines:
        by_ref.setdefault(line.our_ref, []).append(line)
    assert "S2" not in by_ref
    assert [_key(line) for line in by_ref["S1"]] == [(StatementKind.PAYMENT, "S1", day["S1"], 999, 1, "available")]
    assert [_key(line) for line in by_ref["R1"]] == [(StatementKind.REFUND, "R1", day["R1"], 500, 0, "available")] * 2
    assert len({line.line_no for line in by_ref["R1"]}) == 2
    assert [_key(line) for line in by_ref["GHOST-1"]] == [
        (StatementKind.PAYMENT, "GHOST-1", "ch_ghost0001", 4_200, 152, "available")
    ]
    assert [_key(line) for line in by_ref["P1"]] == [(StatementKind.PAYOUT, "P1", day["P1"], 3_000, 0, "available")]


def test_a_page_that_is_not_json_is_unknown(adapter, sim, day):
    sim.statement_corrupt = "truncate"

    with pytest.raises(Unknown):
        list(adapter.statement(YESTERDAY).lines)


def test_a_transaction_that_does_not_add_up_is_unknown(adapter, sim, day):
    sim.statement_corrupt = "net"

    with pytest.raises(Unknown) as caught:
        list(adapter.statement(YESTERDAY).lines)
    assert caught.value.code == "bad_statement"


def test_a_day_not_over_yet_is_retryable(adapter, sim):
    with pytest.raises(Retryable) as caught:
        adapter.statement(datetime.now(UTC).date())
    assert caught.value.code == "not_ready"


def test_an_unreachable_stripe_is_retryable_and_a_refused_key_terminal(account):
    unreachable = StripeAdapter(_config(account, base_url=f"http://127.0.0.1:{_closed_port()}"))
    with pytest.raises(Retryable):
        unreachable.statement(YESTERDAY)

    refused = StripeAdapter(_config(account, secret_key="sk_test_" + "x" * 48))
    with pytest.raises(Terminal):
        refused.statement(YESTERDAY)


def test_a_5xx_on_a_page_is_retryable(adapter, sim):
    sim.faults.fail_5xx = 1

    with pytest.raises(Retryable) as caught:
        adapter.statement(YESTERDAY)
    assert caught.value.code == "http_5xx"


def test_a_synthetic_day_of_20000_lines_streams_in_bounded_memory(adapter, sim):
    day = date(2026, 11, 30)
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

    assert {"count": count, "amount": amount, "fee": fee} == expected
    assert peak < 30 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
    assert len(statement.source_hash) == 64
