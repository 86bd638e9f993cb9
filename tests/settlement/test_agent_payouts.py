"""Agents are paid out too: the whole commission payable (the sum of its entries, no balance row) is held for one
payout under the agent's payout destination lock; paid, it leaves the provider's balance; failed, it goes back; a
refund after a payout leaves the agent owing the platform until later commissions cover it."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.parties import agent_create
from payments.contracts import PayoutOutcome, PayoutResult, RefundStatus
from payments.models import Payment
from settlement import facade, payouts
from settlement.checks import ledger_check
from settlement.locks import payout_destination_locked
from settlement.models import LedgerAccount, LedgerTransaction, Payout, PayoutDestination, PayoutSchedule
from settlement.payouts import payout_create, payout_outcome_apply, payout_retry, payouts_create_due
from tests.concurrency.test_races import race
from tests.factories.core import MerchantFactory
from tests.factories.payments import EpayAccountFactory, PaymentFactory, RefundFactory
from tests.factories.settlement import FeePlanFactory
from tests.settlement.test_payouts import balance

pytestmark = pytest.mark.django_db

COMMISSION = 20  # 200 bp of a 9.99 sale (19.98), out of the platform's 0.60
PAID = PayoutOutcome(result=PayoutResult.PAID, provider_payout_no="T1", provider_status="SUCCESS")
REFUSED = PayoutOutcome(result=PayoutResult.FAILED, provider_status="PAYEE_NOT_EXIST", failure_reason="no payee")


def sell(merchant, account, *, times: int = 1) -> list[str]:
    """Paid T+0 sales of 9.99; each credits the merchant's agent 0.20. Returns their out_trade_nos."""
    sold = []
    for _ in range(times):
        payment = PaymentFactory(account=account, status="succeeded", succeeded_at=timezone.now(), amount_minor=999)
        with transaction.atomic():
            facade.sale_post(
                out_trade_no=payment.out_trade_no,
                order_no=payment.reference,
                merchant_id=merchant.pk,
                gross_minor=999,
                currency="CNY",
                channel_account_id=account.pk,
                channel_fee_minor=6,
            )
        sold.append(payment.out_trade_no)
    return sold


def refund(out_trade_no: str) -> None:
    """The whole sale refunded (the channel returns its fee): the agent's commission is debited back."""
    payment = Payment.objects.get(out_trade_no=out_trade_no)
    row = RefundFactory(payment=payment, status=RefundStatus.SUCCEEDED)
    with transaction.atomic():
        facade.refund_post(
            refund_no=row.refund_no,
            out_trade_no=out_trade_no,
            amount_minor=999,
            currency="CNY",
            channel_returns_fee=True,
        )


def payable(agent) -> int:
    return balance("agent", agent.pk, "agent_commission_payable")


def hold_lines(payout) -> dict[tuple[str, int, str], int]:
    txn = LedgerTransaction.objects.get(idempotency_key=f"payout:{payout.payout_no}")
    return {(e.account.party_kind, e.account.party_id, e.account.kind): e.amount_minor for e in txn.entries.all()}


def agent_with_shop(account, *, payee: str = "agent@example.com"):
    """An agent with a payout destination, and its merchant on a T+0 plan paying it 200 bp of each sale."""
    agent = agent_create(name=f"Agent for {payee}")
    merchant = MerchantFactory(agent=agent)
    FeePlanFactory(merchant=merchant, cycle="T+0", agent_commission_bp=[200], reserve_bp=0, reserve_days=0)
    destination = PayoutDestination.objects.create(
        party_kind="agent", party_id=agent.pk, currency="CNY", channel_account=account, payee=payee, payee_name="李四"
    )
    return agent, merchant, destination


@pytest.fixture
def agency():
    PayoutSchedule.objects.create(currency="CNY", minimum_minor=40)
    account = EpayAccountFactory()
    agent, merchant, destination = agent_with_shop(account)
    sales = sell(merchant, account, times=3)
    return agent, merchant, account, destination, sales


def test_an_agent_gets_one_payout_of_exactly_its_commission_payable(agency):
    agent, merchant, account, destination, _ = agency
    assert payable(agent) == 3 * COMMISSION

    made = payouts_create_due()

    payout = Payout.objects.get()
    assert made == [payout.payout_no]  # the merchant has no destination: only the agent is paid
    assert (payout.party_kind, payout.party_id, payout.amount_minor, payout.state) == ("agent", agent.pk, 60, "created")
    assert (payout.destination_id, payout.payee, payout.channel_account_id) == (
        destination.pk,
        "agent@example.com",
        account.pk,
    )
    assert hold_lines(payout) == {
        ("agent", agent.pk, "agent_commission_payable"): 60,
        ("agent", agent.pk, "payouts_in_transit"): -60,
    }
    assert payable(agent) == 0 and balance("agent", agent.pk, "payouts_in_transit") == 60
    assert balance("merchant", merchant.pk, "merchant_available") == 3 * 939  # the merchant's money is untouched
    # The payable still keeps no balance row: its balance is the sum of its entries.
    assert LedgerAccount.objects.get(party_id=agent.pk, kind="agent_commission_payable").balance_minor is None
    sell(merchant, account, times=3)  # more commission while the payout is on its way
    assert payouts_create_due() == []  # one payout on its way per party at most
    assert Payout.objects.count() == 1 and payable(agent) == 60
    assert ledger_check().ok


def test_an_agent_below_the_minimum_or_frozen_gets_no_payout(agency):
    agent, merchant, account, destination, _ = agency
    PayoutSchedule.objects.filter(currency="CNY").update(minimum_minor=80)
    assert payouts_create_due() == []  # 0.60 < 0.80

    PayoutDestination.objects.filter(pk=destination.pk).update(frozen=True)
    sell(merchant, account)
    assert payouts_create_due() == []  # 0.80, but frozen

    PayoutDestination.objects.filter(pk=destination.pk).update(frozen=False)
    assert len(payouts_create_due()) == 1
    assert Payout.objects.get().amount_minor == 80 and payable(agent) == 0


def test_a_paid_agent_payout_leaves_the_providers_balance(agency):
    agent, _, account, destination, _ = agency
    payout = payout_create(destination_id=destination.pk)
    clearing_before = balance("channel_account", account.pk, "channel_clearing")

    assert payout_outcome_apply(payout_no=payout.payout_no, outcome=PAID) == "paid"

    assert balance("agent", agent.pk, "payouts_in_transit") == 0
    assert balance("channel_account", account.pk, "channel_clearing") == clearing_before - 60 == 3 * 993 - 60
    assert payable(agent) == 0
    paid = LedgerTransaction.objects.get(idempotency_key=f"payout_paid:{payout.payout_no}")
    assert {(e.account.kind, e.amount_minor) for e in paid.entries.all()} == {
        ("payouts_in_transit", 60),
        ("channel_clearing", -60),
    }
    assert payout_outcome_apply(payout_no=payout.payout_no, outcome=REFUSED) == "paid"  # late: nothing changes
    assert LedgerTransaction.objects.filter(reference=payout.payout_no).count() == 2
    assert ledger_check().ok


def test_a_failed_agent_payout_goes_back_to_its_payable_and_waits_for_a_retry(agency):
    agent, merchant, account, destination, _ = agency
    first = payout_create(destination_id=destination.pk)
    sell(merchant, account)  # a commission lands while the payout is on its way

    assert payout_outcome_apply(payout_no=first.payout_no, outcome=REFUSED) == "failed"

    assert payable(agent) == 80 and balance("agent", agent.pk, "payouts_in_transit") == 0
    release = LedgerTransaction.objects.get(idempotency_key=f"payout_release:{first.payout_no}")
    assert {(e.account.kind, e.amount_minor) for e in release.entries.all()} == {
        ("payouts_in_transit", 60),
        ("agent_commission_payable", -60),
    }
    assert payouts_create_due() == []  # refused again every run: an operator retries it

    again = payout_retry(payout_no=first.payout_no, actor="ops")

    assert (again.party_kind, again.amount_minor, again.retry_of) == ("agent", 80, first)
    assert payable(agent) == 0
    assert ledger_check().ok


def test_a_refund_after_a_payout_leaves_the_agent_owing_until_commissions_cover_it(agency):
    agent, merchant, account, destination, sales = agency
    payout = payout_create(destination_id=destination.pk)
    payout_outcome_apply(payout_no=payout.payout_no, outcome=PAID)

    refund(sales[0])

    assert payable(agent) == -COMMISSION  # the agent owes the platform the commission it was paid
    assert payouts_create_due() == []
    sell(merchant, account, times=2)
    assert payable(agent) == COMMISSION and payouts_create_due() == []  # netted: 0.20 left, below the minimum
    sell(merchant, account)

    made = payouts_create_due()

    assert len(made) == 1
    assert Payout.objects.get(payout_no=made[0]).amount_minor == 40  # what is owed was never paid out
    assert payable(agent) == 0
    assert ledger_check().ok


def test_an_agent_payout_locks_the_destination_not_a_balance_row_and_sales_never_take_that_lock(agency):
    agent, merchant, account, destination, _ = agency
    with CaptureQueriesContext(connection) as sale_queries:
        sell(merchant, account)
    with CaptureQueriesContext(connection) as payout_queries:
        payout = payout_create(destination_id=destination.pk)

    sql = [q["sql"] or "" for q in payout_queries.captured_queries]
    locks = [i for i, s in enumerate(sql) if "FOR UPDATE" in s]
    assert len(locks) == 1 and 'FROM "settlement_payoutdestination"' in sql[locks[0]]
    balance_read = next(i for i, s in enumerate(sql) if 'SUM("settlement_ledgerentry"."amount_minor")' in s)
    insert = next(i for i, s in enumerate(sql) if 'INSERT INTO "settlement_payout"' in s)
    assert locks[0] < balance_read < insert  # the payable is summed under the lock, then the payout is written
    assert not any("settlement_payoutdestination" in (q["sql"] or "") for q in sale_queries.captured_queries)
    assert payout.amount_minor == 80


# --- real threads on PostgreSQL (the pattern of test_payout_races) -------------------------------------------------


def record_dispatch(monkeypatch) -> list[tuple[str, str]]:
    """The submission is Celery's (after commit); here only who is dispatched, and when, is recorded."""
    dispatched: list[tuple[str, str]] = []

    def record(task_name: str, payout_no: str) -> None:
        transaction.on_commit(lambda: dispatched.append((task_name, payout_no)))

    monkeypatch.setattr(payouts, "_after_commit", record)
    return dispatched


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_payout_runs_make_one_payout_per_agent(require_postgres, monkeypatch):
    PayoutSchedule.objects.create(currency="CNY", minimum_minor=COMMISSION)
    account = EpayAccountFactory()
    agents = []
    for i in range(5):
        agent, merchant, _ = agent_with_shop(account, payee=f"agent{i}@example.com")
        PayoutDestination.objects.create(
            party_kind="merchant", party_id=merchant.pk, currency="CNY", channel_account=account,
            payee=f"shop{i}@example.com", payee_name="张三",
        )  # fmt: skip
        sell(merchant, account, times=i + 1)
        agents.append((agent, merchant))
    dispatched = record_dispatch(monkeypatch)

    results = race(10, lambda i: payouts_create_due())

    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    made = sorted(no for r in results for no in r)
    assert made == sorted(Payout.objects.values_list("payout_no", flat=True))
    assert len(made) == 10  # one per agent and one per merchant, whatever the interleaving
    for i, (agent, merchant) in enumerate(agents):
        assert Payout.objects.get(party_kind="agent", party_id=agent.pk).amount_minor == COMMISSION * (i + 1)
        assert payable(agent) == 0
        assert balance("agent", agent.pk, "payouts_in_transit") == COMMISSION * (i + 1)
        assert Payout.objects.get(party_kind="merchant", party_id=merchant.pk).amount_minor == 939 * (i + 1)
        assert balance("merchant", merchant.pk, "merchant_available") == 0
    assert sorted(dispatched) == [("settlement.payout_submit", no) for no in made]  # each sent once, after commit
    assert ledger_check().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_payout_runs_racing_an_agents_sales_lose_no_commission(require_postgres, monkeypatch):
    PayoutSchedule.objects.create(currency="CNY", minimum_minor=COMMISSION)
    account = EpayAccountFactory()
    agent, first, _ = agent_with_shop(account)
    merchants = [first]
    for _ in range(4):  # five shops of one agent: their sales credit the same payable at once
        merchant = MerchantFactory(agent=agent)
        FeePlanFactory(merchant=merchant, cycle="T+0", agent_commission_bp=[200], reserve_bp=0, reserve_days=0)
        merchants.append(merchant)
    sell(first, account, times=3)
    record_dispatch(monkeypatch)

    results = race(10, lambda i: payouts_create_due() if i % 2 else sell(merchants[i // 2], account))

    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    payout = Payout.objects.get()  # one payout on its way, whoever ran first
    assert 3 * COMMISSION <= payout.amount_minor <= 8 * COMMISSION
    assert payout.amount_minor + payable(agent) == 8 * COMMISSION  # held or still payable: every commission counted
    assert balance("agent", agent.pk, "payouts_in_transit") == payout.amount_minor
    assert ledger_check().ok


def wait_until_someone_waits_on_a_lock() -> None:
    """pg_locks, not pg_stat_activity: the caller is inside a transaction, where the activity view is a snapshot."""
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    pytest.fail("nobody waited on the lock")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_payout_run_waits_on_the_agents_destination_and_reads_the_payable_after_it(require_postgres, monkeypatch):
    record_dispatch(monkeypatch)
    PayoutSchedule.objects.create(currency="CNY", minimum_minor=COMMISSION)
    account = EpayAccountFactory()
    agent, merchant, destination = agent_with_shop(account)
    sell(merchant, account, times=3)
    out: list[object] = []

    def run() -> None:
        try:
            out.append(payout_create(destination_id=destination.pk))
        except Exception as exc:  # asserted below
            out.append(exc)
        finally:
            connections.close_all()

    with transaction.atomic():  # another payout run of this agent holds its destination
        payout_destination_locked(party_kind="agent", party_id=agent.pk, currency="CNY")
        thread = threading.Thread(target=run)
        thread.start()
        wait_until_someone_waits_on_a_lock()
        sell(merchant, account)  # a commission commits while the run waits
    thread.join(timeout=60)

    payout = out[0]
    assert isinstance(payout, Payout) and payout.amount_minor == 4 * COMMISSION  # read after the lock: all of it
    assert payable(agent) == 0
