"""settlement.facade.sale_post: the issue's worked example booked line by line, T+0, replays and conflicts."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from core.parties import agent_create
from settlement import facade
from settlement.contracts import SettlementError
from settlement.ledger import account_balance
from settlement.models import FeePlan, LedgerAccount, LedgerEntry, LedgerTransaction, SaleRelease
from settlement.services.plans import fee_plan_set
from tests.factories.core import MerchantFactory
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def example():
    """A merchant under a two-level agent chain on the worked-example plan (T+1)."""
    top = agent_create(name="Regional")
    agent = agent_create(name="City", parent_id=top.pk)
    merchant = MerchantFactory(agent=agent)
    plan = FeePlanFactory(merchant=merchant)
    return merchant, agent, top, plan


def post(merchant, *, out_trade_no="P1", order_no="O1", gross=999, fee=6, channel_account_id=77):
    with transaction.atomic():
        return facade.sale_post(
            out_trade_no=out_trade_no,
            order_no=order_no,
            merchant_id=merchant.pk,
            gross_minor=gross,
            currency="CNY",
            channel_account_id=channel_account_id,
            channel_fee_minor=fee,
        )


def balance(party_kind, party_id, kind):
    return account_balance(LedgerAccount.objects.get(party_kind=party_kind, party_id=party_id, kind=kind)).amount_minor


def test_worked_example_books_every_line(example):
    merchant, agent, top, _ = example

    view = post(merchant)

    assert view.key == "sale:P1" and view.kind == "sale" and view.reference == "O1" and view.replayed is False
    lines = {(line.party_kind, line.party_id, line.account_kind): line.amount_minor for line in view.lines}
    assert lines == {
        ("channel_account", 77, "channel_clearing"): 993,  # 9.99 - the channel's 0.06 (60 bp of 9.99 = 5.994)
        ("channel_account", 77, "channel_fee_expense"): 6,
        ("merchant", merchant.pk, "merchant_pending"): -839,  # 9.99 - platform fee 0.60 - reserve 1.00
        ("merchant", merchant.pk, "merchant_reserve"): -100,  # 1000 bp of the sale, held 7 days
        ("agent", agent.pk, "agent_commission_payable"): -20,  # level 1: 200 bp of 9.99 = 19.98
        ("agent", top.pk, "agent_commission_payable"): -10,  # level 2: 100 bp of 9.99 = 9.99
        ("platform", 0, "platform_revenue"): -30,  # fee 0.50 + 0.10 fixed, minus the agents' 0.30
    }
    assert {line.currency for line in view.lines} == {"CNY"}
    assert sum(line.amount_minor for line in view.lines) == 0
    # Balances on each account's normal side.
    assert balance("merchant", merchant.pk, "merchant_pending") == 839
    assert balance("merchant", merchant.pk, "merchant_reserve") == 100
    assert balance("agent", agent.pk, "agent_commission_payable") == 20
    assert balance("agent", top.pk, "agent_commission_payable") == 10
    assert balance("platform", 0, "platform_revenue") == 30
    assert balance("channel_account", 77, "channel_clearing") == 993
    assert balance("channel_account", 77, "channel_fee_expense") == 6
    assert not LedgerAccount.objects.filter(kind="merchant_available").exists()


def test_t0_credits_the_kept_available_balance(example):
    merchant, _, _, plan = example
    plan.cycle = "T+0"
    plan.save(update_fields=["cycle"])

    view = post(merchant)
    post(merchant, out_trade_no="P2", order_no="O2", gross=2000, fee=12)

    assert ("merchant", merchant.pk, "merchant_available") in {
        (line.party_kind, line.party_id, line.account_kind) for line in view.lines
    }
    available = LedgerAccount.objects.get(party_id=merchant.pk, kind="merchant_available")
    assert available.no_overdraft is True
    # 839 + (2000 - round(100) - 10 - 200) = 839 + 1690
    assert available.balance_minor == 2529
    assert account_balance(available).amount_minor == 2529
    assert -sum(LedgerEntry.objects.filter(account=available).values_list("amount_minor", flat=True)) == 2529


def test_the_same_callback_twice_posts_once(example):
    merchant, *_ = example
    first = post(merchant)

    again = post(merchant)

    assert again.replayed is True
    assert again.transaction_id == first.transaction_id and again.lines == first.lines
    assert LedgerTransaction.objects.count() == 1 and LedgerEntry.objects.count() == 7
    assert SaleRelease.objects.count() == 1  # written with the posting, so not again by its replay


def test_a_replay_after_the_plan_changed_still_returns_the_first_posting(example):
    merchant, *_ = example
    first = post(merchant)
    fee_plan_set(merchant_id=merchant.pk, currency="CNY", platform_rate_bp=900)

    again = post(merchant)

    assert again.replayed and again.lines == first.lines


@pytest.mark.parametrize(
    "other",
    [{"gross": 1999}, {"fee": 7}, {"order_no": "O2"}, {"channel_account_id": 78}, {"merchant": "another"}],
)
def test_the_same_key_for_another_sale_is_refused_and_changes_nothing(example, other):
    merchant, *_ = example
    post(merchant)
    if other.pop("merchant", None):
        merchant = FeePlanFactory().merchant

    with pytest.raises(SettlementError) as refused:
        post(merchant, **other)

    assert refused.value.code == "idempotency_conflict"
    assert LedgerTransaction.objects.count() == 1 and LedgerEntry.objects.count() == 7
    assert SaleRelease.objects.count() == 1


def test_a_merchant_without_a_plan_is_booked_on_the_default_plan(settings):
    settings.SETTLEMENT_DEFAULT_PLATFORM_RATE_BP = 300
    settings.SETTLEMENT_DEFAULT_CYCLE = "T+1"
    merchant = MerchantFactory()

    view = post(merchant)

    lines = {(line.party_kind, line.party_id, line.account_kind): line.amount_minor for line in view.lines}
    assert lines == {
        ("channel_account", 77, "channel_clearing"): 993,
        ("channel_account", 77, "channel_fee_expense"): 6,
        ("merchant", merchant.pk, "merchant_pending"): -969,  # 999 - 300 bp (29.97 -> 30)
        ("platform", 0, "platform_revenue"): -30,
    }
    assert not FeePlan.objects.exists()  # the default is not written as a plan


def test_a_default_cycle_that_is_not_a_cycle_is_refused_and_nothing_is_written(settings):
    settings.SETTLEMENT_DEFAULT_CYCLE = "weekly"
    merchant = MerchantFactory()
    with pytest.raises(SettlementError) as refused:
        post(merchant)
    assert refused.value.code == "fee_plan_invalid"
    assert not LedgerTransaction.objects.exists() and not LedgerEntry.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_posting_outside_a_transaction_is_a_programming_error(example):
    merchant, *_ = example
    with pytest.raises(RuntimeError):
        facade.sale_post(
            out_trade_no="P1",
            order_no="O1",
            merchant_id=merchant.pk,
            gross_minor=999,
            currency="CNY",
            channel_account_id=77,
            channel_fee_minor=6,
        )
    assert not LedgerTransaction.objects.exists()


# The test's own savepoint (2); the sale's terms (plan, chain and accounts in one read, settlement.terms); the
# posting: on PostgreSQL one statement (transaction, entries and release row, settlement.writes), on SQLite three;
# no savepoint and no lookup first (ON CONFLICT DO NOTHING). T+0 adds the merchant's available/owed read, their
# lock, and the update.
@pytest.mark.parametrize(("cycle", "extra"), [("T+1", 0), ("T+0", 3)])
def test_a_sale_on_known_accounts_costs_a_fixed_number_of_queries(example, django_assert_num_queries, cycle, extra):
    queries = (4 if connection.vendor == "postgresql" else 6) + extra
    merchant, _, _, plan = example
    plan.cycle = cycle
    plan.save(update_fields=["cycle"])
    post(merchant)  # the accounts exist from here on

    with django_assert_num_queries(queries):
        post(merchant, out_trade_no="P2", order_no="O2")
