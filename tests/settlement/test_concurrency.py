"""Proof 4 (part): the same sale posted by 20 threads at once, on separate PostgreSQL connections, books once."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction

from core.parties import agent_create
from settlement import facade
from settlement.contracts import PostingView
from settlement.ledger import Line, account_balance, account_entries_sum, ledger_account, ledger_post
from settlement.models import LedgerAccount, LedgerEntry, LedgerTransaction
from tests.concurrency.test_races import race
from tests.factories.core import MerchantFactory
from tests.factories.settlement import FeePlanFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("cycle", ["T+1", "T+0"])
def test_twenty_threads_posting_one_key_make_one_transaction(require_postgres, cycle):
    merchant = MerchantFactory(agent=agent_create(name="City", parent_id=agent_create(name="Regional").pk))
    FeePlanFactory(merchant=merchant, cycle=cycle)

    def post(i: int) -> PostingView:
        with transaction.atomic(durable=True):
            return facade.sale_post(
                out_trade_no="P-race",
                order_no="O-race",
                merchant_id=merchant.pk,
                gross_minor=999,
                currency="CNY",
                channel_account_id=77,
                channel_fee_minor=6,
            )

    results = race(20, post)

    assert [r for r in results if not isinstance(r, PostingView)] == []
    assert len({r.transaction_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert LedgerTransaction.objects.count() == 1
    assert LedgerEntry.objects.count() == 7
    merchant_kind = "merchant_available" if cycle == "T+0" else "merchant_pending"
    assert list(LedgerEntry.objects.filter(account__kind=merchant_kind).values_list("amount_minor", flat=True)) == [
        -839
    ]
    if cycle == "T+0":
        assert LedgerAccount.objects.get(kind="merchant_available").balance_minor == 839


def test_a_post_that_waits_on_the_key_of_an_uncommitted_post_returns_it_once_committed(require_postgres):
    """The interleaving behind the race, made deterministic: B checks the key before A commits (and sees nothing),
    then its insert waits on the unique index; when A commits, B's savepoint fails and B returns A's posting."""
    clearing_and_suspense: list[int] = []
    with transaction.atomic():
        for kind, party in (("channel_clearing", ("channel_account", 1)), ("suspense", ("platform", 0))):
            clearing_and_suspense.append(
                ledger_account(party_kind=party[0], party_id=party[1], kind=kind, currency="CNY").pk
            )
    lines = [Line(clearing_and_suspense[0], 500, "CNY"), Line(clearing_and_suspense[1], -500, "CNY")]
    a_posted, a_may_commit = threading.Event(), threading.Event()

    def a() -> int:
        with transaction.atomic():
            txn = ledger_post(key="suspense:P1", kind="suspense", reference="O1", lines=lines)
            a_posted.set()
            assert a_may_commit.wait(timeout=30)
        return txn.pk

    def b() -> tuple[int, bool]:
        assert a_posted.wait(timeout=30)
        with transaction.atomic():
            txn = ledger_post(key="suspense:P1", kind="suspense", reference="O1", lines=lines)
        return txn.pk, txn.replayed

    def run(work, out, i):
        try:
            out[i] = work()
        except Exception as exc:  # asserted below
            out[i] = exc
        finally:
            connections.close_all()

    out: list[object] = [None, None]
    threads = [threading.Thread(target=run, args=(w, out, i)) for i, w in enumerate((a, b))]
    for t in threads:
        t.start()
    assert a_posted.wait(timeout=30)
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:  # B is blocked on A's row in the unique index
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the second post never waited on the first one's key")
    a_may_commit.set()
    for t in threads:
        t.join(timeout=60)

    assert out[1] == (out[0], True)
    assert LedgerTransaction.objects.count() == 1 and LedgerEntry.objects.count() == 2


def test_fifty_concurrent_sales_of_one_merchant_through_one_channel_account_give_exact_balances(require_postgres):
    merchant = MerchantFactory(agent=agent_create(name="City", parent_id=agent_create(name="Regional").pk))
    FeePlanFactory(merchant=merchant, cycle="T+0")  # T+0: every sale also takes the merchant's balance row lock

    def post(i: int) -> PostingView:
        with transaction.atomic(durable=True):
            return facade.sale_post(
                out_trade_no=f"P{i}",
                order_no=f"O{i}",
                merchant_id=merchant.pk,
                gross_minor=999,
                currency="CNY",
                channel_account_id=77,
                channel_fee_minor=6,
            )

    results = race(50, post)

    assert [r for r in results if not isinstance(r, PostingView)] == []
    assert LedgerTransaction.objects.count() == 50
    available = LedgerAccount.objects.get(kind="merchant_available")
    assert available.balance_minor == 50 * 839 == account_balance(available).amount_minor
    assert -account_entries_sum(available) == 50 * 839
    for kind, party_kind, normal_balance in [
        ("platform_revenue", "platform", 50 * 30),
        ("channel_clearing", "channel_account", 50 * 993),
        ("channel_fee_expense", "channel_account", 50 * 6),
        ("merchant_reserve", "merchant", 50 * 100),
    ]:
        assert (
            account_balance(LedgerAccount.objects.get(kind=kind, party_kind=party_kind)).amount_minor == normal_balance
        )
    assert sorted(
        account_balance(a).amount_minor for a in LedgerAccount.objects.filter(kind="agent_commission_payable")
    ) == [50 * 10, 50 * 20]
    assert sum(LedgerEntry.objects.values_list("amount_minor", flat=True)) == 0
