"""The epay statement (the day's orders off api.php?act=orders) against the simulator over real HTTP."""

import tracemalloc
from datetime import date, datetime, timedelta, timezone

import pytest

from core.money import Money
from payments.channels.base import (
    AccountConfig,
    Capability,
    CreateOrder,
    RefundRequest,
    Retryable,
    StatementKind,
    Terminal,
    Unknown,
)
from payments.channels.epay.adapter import EpayAdapter
from payments.simulators.epay import EpaySimulator

SHANGHAI = timezone(timedelta(hours=8))
DAY = date(2026, 11, 20)
PID, KEY = "7001", "k" * 32


@pytest.fixture
def epay_sim():
    """A panel of its own per test: the shared one keeps other tests' orders and switches."""
    sim = EpaySimulator().start()
    yield sim
    sim.stop()


def _adapter(sim, **credentials: str) -> EpayAdapter:
    sim.add_merchant(PID, KEY)
    cfg = AccountConfig(
        account_id=1,
        code="epay",
        merchant_no=PID,
        base_url=sim.base_url,
        currency="CNY",
        credentials={"key": KEY, **credentials},
    )
    return EpayAdapter(cfg)


def _at(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=SHANGHAI)


def _trade(adapter: EpayAdapter, sim, no: str, minor: int, created: datetime, paid: datetime | None) -> str:
    """A trade created through mapi.php at `created` (the panel's clock), paid by the buyer at `paid`."""
    sim.clock = lambda: created
    adapter.create(
        CreateOrder(
            out_trade_no=no,
            amount=Money(minor, "CNY"),
            subject="Gift",
            notify_url="http://127.0.0.1:9/notify/epay/",  # nobody listens: the notify fails, the trade is paid
            return_url="",
            client_ip="127.0.0.1",
            method="alipay",
        )
    )
    if paid is not None:
        sim.clock = lambda: paid
        sim.pay(no)
    return sim.trade_for(no)["trade_no"]


def _refund(adapter: EpayAdapter, no: str, trade_no: str, minor: int) -> None:
    money = Money(minor, "CNY")
    adapter.refund(RefundRequest("R-" + no, no, trade_no, money, money, "buyer asked", ""))


@pytest.fixture
def day_of_trades(epay_sim):
    """DAY: three paid trades (one created the evening before), one of them refunded; around it, a trade paid
    just before DAY, one paid just after, and one never paid."""
    adapter = _adapter(epay_sim)
    refs = {
        "BEFORE": _trade(
            adapter, epay_sim, "BEFORE", 500, _at(DAY, 0) - timedelta(hours=2), _at(DAY, 0) - timedelta(seconds=1)
        ),
        "EVE": _trade(adapter, epay_sim, "EVE", 1990, _at(DAY, 0) - timedelta(minutes=10), _at(DAY, 0, 5)),
        "NOON": _trade(adapter, epay_sim, "NOON", 990, _at(DAY, 12), _at(DAY, 12, 1)),
        "REFUNDED": _trade(adapter, epay_sim, "REFUNDED", 3000, _at(DAY, 15), _at(DAY, 15, 2)),
        "UNPAID": _trade(adapter, epay_sim, "UNPAID", 700, _at(DAY, 16), None),
        "LAST": _trade(adapter, epay_sim, "LAST", 100, _at(DAY, 23, 59), _at(DAY, 23, 59, 59)),
        "AFTER": _trade(adapter, epay_sim, "AFTER", 200, _at(DAY, 23, 59, 30), _at(DAY + timedelta(days=1), 0)),
    }
    _refund(adapter, "REFUNDED", refs["REFUNDED"], 3000)
    epay_sim.clock = None
    return refs


def _summary(statement) -> list[tuple]:
    return [
        (line.kind, line.our_ref, line.provider_ref, line.amount.amount_minor, line.fee.amount_minor, line.status)
        for line in statement.lines
    ]


def test_a_day_parses_to_its_completed_orders_with_the_panels_fees_and_the_refund(epay_sim, day_of_trades):
    epay_sim.orders_full_rows, epay_sim.fee_rate_bp = True, 200  # this fork lists getmoney: money less 2%
    refs = day_of_trades
    statement = _adapter(epay_sim, orders_page_size="3").statement(DAY)  # small pages: several are walked
    lines = list(statement.lines)

    assert [
        (x.kind, x.our_ref, x.provider_ref, x.amount.amount_minor, x.fee.amount_minor, x.status) for x in lines
    ] == [
        (StatementKind.PAYMENT, "LAST", refs["LAST"], 100, 2, "1"),
        (StatementKind.PAYMENT, "REFUNDED", refs["REFUNDED"], 3000, 60, "2"),
        (StatementKind.REFUND, "", refs["REFUNDED"], 3000, 0, "2"),
        (StatementKind.PAYMENT, "NOON", refs["NOON"], 990, 20, "1"),
        (StatementKind.PAYMENT, "EVE", refs["EVE"], 1990, 40, "1"),
    ]
    assert lines[2].trade_ref == refs["REFUNDED"]
    assert lines[0].occurred_at == _at(DAY, 23, 59, 59) and lines[-1].occurred_at == _at(DAY, 0, 5)
    assert all(line.amount.currency == line.fee.currency == "CNY" for line in lines)
    assert statement.totals is None  # the order list has no control totals
    assert len(statement.source_hash) == 64


def test_basic_rows_carry_no_fee_and_a_refund_comes_from_the_status(epay_sim, day_of_trades):
    refs = day_of_trades  # the real panel's row: no getmoney, no refundmoney
    lines = _summary(_adapter(epay_sim).statement(DAY))
    assert lines == [
        (StatementKind.PAYMENT, "LAST", refs["LAST"], 100, 0, "1"),
        (StatementKind.PAYMENT, "REFUNDED", refs["REFUNDED"], 3000, 0, "2"),
        (StatementKind.REFUND, "", refs["REFUNDED"], 3000, 0, "2"),
        (StatementKind.PAYMENT, "NOON", refs["NOON"], 990, 0, "1"),
        (StatementKind.PAYMENT, "EVE", refs["EVE"], 1990, 0, "1"),
    ]


def test_page_paging_reads_the_same_day(epay_sim, day_of_trades):
    statement = _adapter(epay_sim, orders_paging="page", orders_page_size="2").statement(DAY)
    assert [line.our_ref for line in statement.lines] == ["LAST", "REFUNDED", "", "NOON", "EVE"]


def test_injected_discrepancies_show_in_the_parsed_lines(epay_sim, day_of_trades):
    epay_sim.orders_full_rows, epay_sim.fee_rate_bp = True, 200
    epay_sim.statement_omit = {"NOON"}
    epay_sim.statement_override = {"EVE": {"money": "19.80", "getmoney": "19.00"}, "LAST": {"status": 3}}
    epay_sim.statement_duplicate = {"REFUNDED"}
    epay_sim.statement_add_unknown(
        "NEVER-SEEN", "2026112018000099999", "66.60", endtime="2026-11-20 18:00:00", fee="1.33"
    )
    lines = _summary(_adapter(epay_sim, orders_page_size="2").statement(DAY))

    refs = day_of_trades
    assert lines == [
        (StatementKind.PAYMENT, "LAST", refs["LAST"], 100, 2, "3"),
        (StatementKind.PAYMENT, "NEVER-SEEN", "2026112018000099999", 6660, 133, "1"),
        (StatementKind.PAYMENT, "REFUNDED", refs["REFUNDED"], 3000, 60, "2"),
        (StatementKind.REFUND, "", refs["REFUNDED"], 3000, 0, "2"),
        (StatementKind.PAYMENT, "REFUNDED", refs["REFUNDED"], 3000, 60, "2"),
        (StatementKind.REFUND, "", refs["REFUNDED"], 3000, 0, "2"),
        (StatementKind.PAYMENT, "EVE", refs["EVE"], 1980, 80, "1"),
    ]
    assert "NOON" not in {line[1] for line in lines}


def test_new_orders_arriving_while_the_list_is_read_do_not_repeat_lines(epay_sim, day_of_trades):
    adapter = _adapter(epay_sim, orders_page_size="2")
    statement = adapter.statement(DAY)
    first = next(statement.lines)
    for n in range(3):  # pushes every row down the list by three before the next page is read
        _trade(adapter, epay_sim, f"LATER-{n}", 100, datetime.now(SHANGHAI), datetime.now(SHANGHAI))
    rest = [line.our_ref for line in statement.lines]
    assert [first.our_ref, *rest] == ["LAST", "REFUNDED", "", "NOON", "EVE"]


def test_orders_purged_while_the_list_is_read_do_not_hide_lines(epay_sim, day_of_trades):
    statement = _adapter(epay_sim, orders_page_size="2").statement(DAY)
    first = next(statement.lines)  # page one read: AFTER, LAST
    epay_sim.statement_omit = {"AFTER", "LAST"}  # the panel purges rows above: everything moves up by two
    rest = [line.our_ref for line in statement.lines]
    assert [first.our_ref, *rest] == ["LAST", "REFUNDED", "", "NOON", "EVE"]


def test_a_corrupt_answer_is_unknown(epay_sim, day_of_trades):
    epay_sim.statement_corrupt = True
    with pytest.raises(Unknown) as exc:
        _adapter(epay_sim).statement(DAY)
    assert exc.value.code == "bad_statement"
    epay_sim.statement_reset()
    assert [line.our_ref for line in _adapter(epay_sim).statement(DAY).lines] == ["LAST", "REFUNDED", "", "NOON", "EVE"]


def test_a_row_of_another_merchant_is_unknown(epay_sim, day_of_trades):
    epay_sim.statement_override = {"NOON": {"pid": "9999"}}
    statement = _adapter(epay_sim).statement(DAY)
    with pytest.raises(Unknown):
        list(statement.lines)


@pytest.mark.parametrize("field, value", [("money", "9.9.9"), ("endtime", "2026/11/20 12:01"), ("getmoney", "99.00")])
def test_a_row_the_adapter_cannot_read_is_unknown(epay_sim, day_of_trades, field, value):
    epay_sim.orders_full_rows = True
    epay_sim.statement_override = {"NOON": {field: value}}  # getmoney above money: keeps more than was paid
    statement = _adapter(epay_sim).statement(DAY)
    with pytest.raises(Unknown) as exc:
        list(statement.lines)
    assert exc.value.code == "bad_statement"


def test_an_empty_list_is_an_empty_statement(epay_sim):
    statement = _adapter(epay_sim).statement(DAY)  # the panel answers "data": null
    assert list(statement.lines) == [] and len(statement.source_hash) == 64


def test_a_day_not_over_in_shanghai_is_retryable(epay_sim):
    today = datetime.now(SHANGHAI).date()
    with pytest.raises(Retryable) as exc:
        _adapter(epay_sim).statement(today)
    assert exc.value.code == "not_ready"
    _adapter(epay_sim).statement(today - timedelta(days=1))  # yesterday is over


def test_a_wrong_key_is_terminal_and_a_dead_panel_retryable(epay_sim):
    epay_sim.add_merchant(PID, KEY)
    cfg = _adapter(epay_sim).account
    wrong = EpayAdapter(AccountConfig(1, "epay", PID, epay_sim.base_url, "CNY", {"key": "nope"}))
    with pytest.raises(Terminal):
        wrong.statement(DAY)
    missing = EpayAdapter(AccountConfig(1, "epay", PID, epay_sim.base_url + "/gone", "CNY", {"key": KEY}))
    with pytest.raises(Terminal):  # no api.php there: the site's 404
        missing.statement(DAY)
    dead = EpayAdapter(AccountConfig(1, "epay", PID, "http://127.0.0.1:9", "CNY", dict(cfg.credentials)))
    with pytest.raises(Retryable):
        dead.statement(DAY)


def test_a_synthetic_day_of_20000_orders_streams_in_bounded_memory(epay_sim):
    epay_sim.orders_full_rows, epay_sim.fee_rate_bp = True, 60
    expected = epay_sim.statement_synthetic(DAY, 20_000)
    adapter = _adapter(epay_sim)

    tracemalloc.start()
    try:
        count = amount = fee = 0
        statement = adapter.statement(DAY)
        for line in statement.lines:
            count += 1
            amount += line.amount.amount_minor
            fee += line.fee.amount_minor
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (count, amount, fee) == (expected["count"], expected["amount_minor"], expected["fee_minor"])
    assert peak < 30 * 1024 * 1024, peak


def test_capability_present():
    assert Capability.STATEMENT in EpayAdapter.capabilities
