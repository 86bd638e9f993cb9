"""The bank gateway's daily statement (SOAP `Statement`, paged and signed) through zeep against the simulator over
real HTTP: what the bank booked on one Beijing day, the injected discrepancies, forged pages, and a long day
streamed one page at a time.

Each test gets its own merchant at the bank and pins the bank's booking clock, so a statement holds exactly what
the test booked.
"""

from __future__ import annotations

import socket
import tracemalloc
from collections.abc import Iterator
from datetime import date, datetime

import pytest

from core.money import Money
from payments.channels.bankgw import wire
from payments.channels.bankgw.adapter import BankGatewayAdapter
from payments.channels.base import (
    AccountConfig,
    Capability,
    CreateOrder,
    PayoutRequest,
    RefundRequest,
    Retryable,
    StatementKind,
    StatementLine,
    StatementTotals,
    Terminal,
    Unknown,
)
from payments.simulators.bankgw import STATEMENT_FORGERIES, BankGatewaySimulator, Merchant

DAY = date(2026, 12, 1)
NEXT_DAY_STARTS = "2026-12-02T00:00:00+08:00"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the block ends: nothing listens there


# The bank's callbacks go nowhere (refused at once): these tests read the statement, not the callbacks.
NOTIFY_URL = f"http://127.0.0.1:{_free_port()}/notify/bankgw/"


@pytest.fixture(scope="module")
def sim() -> Iterator[BankGatewaySimulator]:
    s = BankGatewaySimulator().start()
    yield s
    s.stop()


def _reset(bank: BankGatewaySimulator) -> None:
    bank.faults.reset()
    bank.statement_omit.clear()
    bank.statement_override.clear()
    bank.statement_duplicate.clear()
    bank.statement_extra.clear()
    bank.statement_forgery, bank.statement_forgery_page = "", 0


@pytest.fixture
def bank(sim) -> Iterator[BankGatewaySimulator]:
    _reset(sim)
    real_clock = sim.clock
    yield sim
    sim.clock = real_clock
    _reset(sim)


@pytest.fixture
def merchant(bank) -> Merchant:
    return bank.new_merchant()


def _config(bank: BankGatewaySimulator, merchant: Merchant, **overrides) -> AccountConfig:
    acc = bank.account_for(merchant)
    fields = dict(
        account_id=1,
        code="bankgw",
        merchant_no=acc.merchant_no,
        base_url=acc.base_url,
        currency=acc.currency,
        credentials=acc.credentials,
    )
    return AccountConfig(**{**fields, **overrides})


@pytest.fixture
def adapter(bank, merchant) -> BankGatewayAdapter:
    return BankGatewayAdapter(_config(bank, merchant))


def _at(bank: BankGatewaySimulator, when: str) -> datetime:
    """From now on the bank books everything at `when` (an ISO date-time with its offset)."""
    moment = datetime.fromisoformat(when)
    bank.clock = moment.timestamp
    return moment


def _paid(adapter: BankGatewayAdapter, bank: BankGatewaySimulator, out_trade_no: str, minor: int) -> str:
    created = adapter.create(
        CreateOrder(
            out_trade_no=out_trade_no,
            amount=Money(minor, "CNY"),
            subject="Game card",
            notify_url=NOTIFY_URL,
            return_url="",
            client_ip="127.0.0.1",
            method="bank",
        )
    )
    bank.pay(out_trade_no)
    return created.provider_trade_no


def _refund(adapter: BankGatewayAdapter, refund_no: str, out_trade_no: str, bank_ref: str, minor: int, total: int):
    return adapter.refund(
        RefundRequest(
            refund_no=refund_no,
            out_trade_no=out_trade_no,
            provider_trade_no=bank_ref,
            amount=Money(minor, "CNY"),
            total=Money(total, "CNY"),
            reason="buyer asked",
            notify_url="",
        )
    )


def _cny(minor: int) -> Money:
    return Money(minor, "CNY")


def _read(adapter: BankGatewayAdapter, day: date = DAY) -> tuple[list[StatementLine], StatementTotals, str]:
    statement = adapter.statement(day)
    lines = list(statement.lines)
    assert statement.day == day
    return lines, statement.totals, statement.source_hash


def test_statement_capability_is_declared():
    assert Capability.STATEMENT in BankGatewayAdapter.capabilities


def test_entry_types_and_their_directions_are_explicit():
    assert wire.STATEMENT_KIND == {
        "PAYMENT": StatementKind.PAYMENT,
        "REFUND": StatementKind.REFUND,
        "TRANSFER": StatementKind.PAYOUT,
        "FEE": StatementKind.OTHER,
    }
    assert str(wire.STATEMENT_ZONE) == "Asia/Shanghai"


def test_a_beijing_day_lists_exactly_its_payments_refund_transfer_and_fee(adapter, bank, merchant):
    # Given: one payment a second before the day, then the day's bookings, then one at the next midnight.
    merchant.transfer_fee_minor = 150
    _at(bank, "2026-11-30T23:59:59+08:00")  # 15:59:59 UTC on 30 November: the previous bank day
    _paid(adapter, bank, "O-before", 5_000)
    at_1 = _at(bank, "2026-12-01T00:00:00+08:00")  # still 30 November in UTC, already 1 December in Beijing
    ref_1 = _paid(adapter, bank, "O-1", 10_000)
    at_2 = _at(bank, "2026-12-01T09:30:00+08:00")
    ref_2 = _paid(adapter, bank, "O-2", 2_550)
    at_r = _at(bank, "2026-12-01T10:00:00+08:00")
    refund = _refund(adapter, "R-1", "O-1", ref_1, 4_000, 10_000)
    at_t = _at(bank, "2026-12-01T11:00:00+08:00")
    transfer = adapter.payout(
        PayoutRequest(payout_no="P-1", amount=_cny(12_000), payee="CN12BANK0000123", payee_name="Li", remark="")
    )
    at_f = _at(bank, "2026-12-01T23:59:59+08:00")
    fee_ref = bank.book_fee(merchant.merchant_id, 500)
    _at(bank, NEXT_DAY_STARTS)
    _paid(adapter, bank, "O-after", 7_000)

    # When
    lines, totals, source_hash = _read(adapter)

    # Then: 0.6 % fees rounded half up (60 and 15.3 -> 15); the refund gives back 4000/10000 of its payment's fee.
    assert lines == [
        StatementLine(StatementKind.PAYMENT, ref_1, "O-1", _cny(10_000), _cny(60), "PAID", at_1, line_no=1),
        StatementLine(StatementKind.PAYMENT, ref_2, "O-2", _cny(2_550), _cny(15), "PAID", at_2, line_no=2),
        StatementLine(
            StatementKind.REFUND, refund.provider_refund_no, "R-1", _cny(4_000), _cny(24), "SUCCESS", at_r, ref_1, 3
        ),
        StatementLine(
            StatementKind.PAYOUT, transfer.provider_payout_no, "P-1", _cny(12_000), _cny(150), "SETTLED", at_t, "", 4
        ),
        StatementLine(StatementKind.OTHER, fee_ref, "", _cny(500), _cny(0), "BOOKED", at_f, line_no=5),
    ]
    assert all(line.occurred_at.utcoffset().total_seconds() == 8 * 3600 for line in lines)
    # The bank's totals: the signed sum of what moved the balance and of its fee income.
    assert totals == StatementTotals(
        count=5, amount=_cny(10_000 + 2_550 - 4_000 - 12_000 - 500), fee=_cny(60 + 15 - 24 + 150)
    )
    assert len(source_hash) == 64
    # The same closed day downloads to the same bytes.
    assert _read(adapter)[2] == source_hash


def test_a_day_not_closed_yet_is_retryable_until_its_midnight(adapter, bank):
    _at(bank, "2026-12-01T10:00:00+08:00")
    _paid(adapter, bank, "O-early", 1_000)
    _at(bank, "2026-12-01T23:59:59+08:00")

    with pytest.raises(Retryable) as exc:
        adapter.statement(DAY)
    assert exc.value.code == "not_ready"
    with pytest.raises(Retryable):
        adapter.statement(date(2026, 12, 2))  # a future day

    _at(bank, NEXT_DAY_STARTS)
    lines, totals, _ = _read(adapter)
    assert [line.our_ref for line in lines] == ["O-early"]
    assert totals.count == 1


def test_an_empty_day_is_an_empty_statement_with_zero_totals(adapter, bank):
    _at(bank, NEXT_DAY_STARTS)

    lines, totals, source_hash = _read(adapter)

    assert lines == []
    assert totals == StatementTotals(count=0, amount=_cny(0), fee=_cny(0))
    assert len(source_hash) == 64


def test_injected_discrepancies_show_in_the_parsed_lines(adapter, bank):
    # Given: four payments booked on the day, and a bank that disagrees about them.
    _at(bank, "2026-12-01T12:00:00+08:00")
    refs = {no: _paid(adapter, bank, no, 3_000) for no in ("O-kept", "O-omitted", "O-changed", "O-twice")}
    _at(bank, NEXT_DAY_STARTS)
    bank.statement_omit.add("O-omitted")
    bank.statement_override["O-changed"] = {"amount_minor": 2_999, "fee_minor": 7, "status": "REVERSED"}
    bank.statement_duplicate.add("O-twice")
    bank.statement_extra.append(
        {"our_ref": "O-ghost", "provider_ref": "BGGHOST0001", "amount_minor": 777, "fee_minor": 5, "status": "PAID"}
    )

    # When
    lines, totals, _ = _read(adapter)

    # Then
    by_ref: dict[str, list[StatementLine]] = {}
    for line in lines:
        by_ref.setdefault(line.our_ref, []).append(line)
    assert sorted(by_ref) == ["O-changed", "O-ghost", "O-kept", "O-twice"]
    assert "O-omitted" not in by_ref
    changed = by_ref["O-changed"][0]
    assert (changed.provider_ref, changed.amount, changed.fee, changed.status) == (
        refs["O-changed"],
        _cny(2_999),
        _cny(7),
        "REVERSED",
    )
    assert [(line.provider_ref, line.amount) for line in by_ref["O-twice"]] == [(refs["O-twice"], _cny(3_000))] * 2
    ghost = by_ref["O-ghost"][0]
    assert (ghost.kind, ghost.provider_ref, ghost.amount, ghost.fee, ghost.status) == (
        StatementKind.PAYMENT,
        "BGGHOST0001",
        _cny(777),
        _cny(5),
        "PAID",
    )
    kept = by_ref["O-kept"][0]
    assert (kept.provider_ref, kept.amount, kept.fee) == (refs["O-kept"], _cny(3_000), _cny(18))
    # The bank's totals add up what it listed, discrepancies included.
    assert totals == StatementTotals(
        count=5, amount=sum((line.amount for line in lines), _cny(0)), fee=sum((line.fee for line in lines), _cny(0))
    )
    assert [line.line_no for line in lines] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("forgery", ["tampered", "bad_key", "unsigned"])
def test_a_forged_first_page_is_unknown(adapter, bank, forgery):
    _at(bank, "2026-12-01T12:00:00+08:00")
    _paid(adapter, bank, "O-forged", 1_000)
    _at(bank, NEXT_DAY_STARTS)
    bank.statement_forgery = forgery

    with pytest.raises(Unknown) as exc:
        adapter.statement(DAY)
    assert exc.value.code == "bad_signature"


@pytest.mark.parametrize("forgery", ["tampered", "bad_key", "unsigned"])
def test_a_forged_later_page_is_unknown_while_streaming(adapter, bank, merchant, forgery):
    _at(bank, NEXT_DAY_STARTS)
    bank.statement_synthetic(DAY, 1_500, merchant.merchant_id)
    bank.statement_forgery, bank.statement_forgery_page = forgery, 2
    statement = adapter.statement(DAY)
    read = 0

    with pytest.raises(Unknown) as exc:
        for _ in statement.lines:
            read += 1
    assert exc.value.code == "bad_signature"
    assert read == wire.STATEMENT_PAGE_SIZE  # page 1 was good; nothing of page 2 came through
    assert statement.source_hash == ""


def test_an_unsigned_not_ready_is_unknown_not_retryable(adapter, bank):
    _at(bank, "2026-12-01T12:00:00+08:00")
    bank.statement_forgery = "unsigned"

    with pytest.raises(Unknown) as exc:
        adapter.statement(DAY)
    assert exc.value.code == "bad_signature"


def test_totals_that_do_not_add_up_are_unknown_after_the_lines(adapter, bank):
    _at(bank, "2026-12-01T12:00:00+08:00")
    _paid(adapter, bank, "O-miscounted", 1_000)
    _at(bank, NEXT_DAY_STARTS)
    bank.statement_forgery = "miscounted"  # correctly signed: the bank's own error
    statement = adapter.statement(DAY)

    with pytest.raises(Unknown) as exc:
        list(statement.lines)
    assert exc.value.code == "totals_mismatch"
    assert statement.source_hash == ""


def test_a_statement_that_changes_between_pages_is_unknown(adapter, bank, merchant):
    _at(bank, NEXT_DAY_STARTS)
    bank.statement_synthetic(DAY, 1_500, merchant.merchant_id)
    statement = adapter.statement(DAY)
    lines = iter(statement.lines)
    for _ in range(wire.STATEMENT_PAGE_SIZE):
        next(lines)

    bank.statement_synthetic(DAY, 1_600, merchant.merchant_id)
    with pytest.raises(Unknown) as exc:
        next(lines)
    assert exc.value.code == "statement_changed"


def test_a_failing_bank_or_no_connection_is_retryable(adapter, bank, merchant):
    _at(bank, NEXT_DAY_STARTS)
    bank.faults.fail_5xx = 1
    with pytest.raises(Retryable):
        adapter.statement(DAY)

    nowhere = BankGatewayAdapter(_config(bank, merchant, base_url=f"http://127.0.0.1:{_free_port()}"))
    with pytest.raises(Retryable) as exc:
        nowhere.statement(DAY)
    assert exc.value.code == "connect"


def test_a_statement_download_that_times_out_is_retryable(bank, merchant):
    _at(bank, NEXT_DAY_STARTS)
    bank.faults.timeout, bank.faults.hang_seconds = 1, 1.0
    adapter = BankGatewayAdapter(_config(bank, merchant, timeouts=(1.0, 0.3)))

    with pytest.raises(Retryable) as exc:  # a download changes nothing at the bank: ask again later
        adapter.statement(DAY)
    assert exc.value.code == "timeout"


@pytest.mark.parametrize(
    "extra",
    [
        {"amount_minor": -500},  # a payment that took money from the balance
        {"fee_minor": -3},  # a fee the bank paid us on a payment
        {"entry_type": "REFUND"},  # a refund that names no refunded payment
    ],
)
def test_an_entry_the_bank_cannot_have_booked_is_unknown(adapter, bank, extra):
    _at(bank, NEXT_DAY_STARTS)
    entry = {"our_ref": "O-odd", "provider_ref": "BGODD0001", "amount_minor": 500, "fee_minor": 3, "status": "PAID"}
    bank.statement_extra.append({**entry, **extra})
    statement = adapter.statement(DAY)

    with pytest.raises(Unknown) as exc:
        list(statement.lines)
    assert exc.value.code == "bad_response"
    assert "line 1" in str(exc.value)


def test_a_request_signed_with_the_wrong_key_is_refused_for_good(bank, merchant):
    _at(bank, NEXT_DAY_STARTS)
    creds = {**bank.account_for(merchant).credentials, "notify_key": "0" * 64}
    adapter = BankGatewayAdapter(_config(bank, merchant, credentials=creds))

    with pytest.raises(Terminal) as exc:
        adapter.statement(DAY)
    assert "Client.Signature" in str(exc.value)


def test_a_synthetic_20000_line_day_streams_in_bounded_memory(adapter, bank, merchant):
    _at(bank, NEXT_DAY_STARTS)
    count, net, fees = bank.statement_synthetic(DAY, 20_000, merchant.merchant_id)

    tracemalloc.start()
    try:
        statement = adapter.statement(DAY)
        seen = amount = fee = 0
        for line in statement.lines:
            seen += 1
            amount += line.amount.amount_minor
            fee += line.fee.amount_minor
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (seen, amount, fee) == (count, net, fees) == (20_000, net, fees)
    assert statement.totals == StatementTotals(count=20_000, amount=_cny(net), fee=_cny(fees))
    assert len(statement.source_hash) == 64
    assert peak < 30 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_statement_forgeries_are_the_documented_ones():
    assert STATEMENT_FORGERIES == ("tampered", "bad_key", "unsigned", "miscounted")
