"""settlement.terms reads in one hand-written query what the ORM reads in three: it must agree with them."""

from __future__ import annotations

import pytest

from core.parties import agent_chain_for_merchant, agent_create
from settlement.ledger import ledger_accounts
from settlement.models import FeePlan
from settlement.services.plans import fee_plan_active, fee_plan_set
from settlement.terms import sale_terms_read
from tests.factories.core import MerchantFactory

pytestmark = pytest.mark.django_db

PLAN_FIELDS = (
    "platform_rate_bp",
    "platform_fixed_minor",
    "reserve_bp",
    "cycle",
    "n_days",
    "reserve_days",
    "refund_fee_borne_by",
)


def chain_of(levels: int):
    """A merchant under a chain of `levels` agents (0: no agent)."""
    parent = None
    for level in range(levels):
        parent = agent_create(name=f"A{level}", parent_id=parent.pk if parent else None)
    return MerchantFactory(agent=parent)


@pytest.mark.parametrize("levels", [0, 1, 2, 3])
def test_the_chain_is_the_one_core_walks(levels):
    merchant = chain_of(levels)

    terms = sale_terms_read(merchant_id=merchant.pk, currency="CNY", channel_account_id=1)

    assert terms.merchant_found
    assert list(terms.agent_chain) == agent_chain_for_merchant(merchant_id=merchant.pk)
    assert len(terms.agent_chain) == levels


def test_a_chain_deeper_than_a_lowered_setting_stops_at_the_setting(settings):
    merchant = chain_of(3)
    settings.SETTLEMENT_AGENT_MAX_DEPTH = 2

    terms = sale_terms_read(merchant_id=merchant.pk, currency="CNY", channel_account_id=1)

    assert list(terms.agent_chain) == agent_chain_for_merchant(merchant_id=merchant.pk)
    assert len(terms.agent_chain) == 2


def test_the_plan_is_the_active_one_in_the_currency():
    merchant = chain_of(2)
    fee_plan_set(merchant_id=merchant.pk, currency="CNY", platform_rate_bp=400)  # replaced below, kept as history
    fee_plan_set(
        merchant_id=merchant.pk,
        currency="CNY",
        platform_rate_bp=500,
        platform_fixed_minor=10,
        cycle="D+N",
        n_days=3,
        reserve_bp=1000,
        reserve_days=7,
        agent_commission_bp=[200, 100],
    )
    fee_plan_set(merchant_id=merchant.pk, currency="USD", platform_rate_bp=900)
    FeePlan.objects.filter(merchant=merchant, currency="CNY", is_active=True).update(refund_fee_borne_by="merchant")

    plan = sale_terms_read(merchant_id=merchant.pk, currency="CNY", channel_account_id=1).plan
    active = fee_plan_active(merchant_id=merchant.pk, currency="CNY")

    assert {f: getattr(plan, f) for f in PLAN_FIELDS} == {f: getattr(active, f) for f in PLAN_FIELDS}
    assert plan.agent_commission_bp == (200, 100)
    assert plan.refund_fee_borne_by == "merchant"
    assert sale_terms_read(merchant_id=merchant.pk, currency="USD", channel_account_id=1).plan.platform_rate_bp == 900
    assert sale_terms_read(merchant_id=merchant.pk, currency="EUR", channel_account_id=1).plan is None


def test_accounts_are_found_by_party_and_currency_and_missing_ones_are_none():
    merchant = chain_of(2)
    agent, top = agent_chain_for_merchant(merchant_id=merchant.pk)
    specs = [
        ("channel_account", 5, "channel_clearing"),
        ("channel_account", 5, "channel_fee_expense"),
        ("merchant", merchant.pk, "merchant_pending"),
        ("merchant", merchant.pk, "merchant_reserve"),
        ("platform", 0, "platform_revenue"),
        ("agent", agent, "agent_commission_payable"),
        ("agent", top, "agent_commission_payable"),
    ]
    made = ledger_accounts(currency="CNY", specs=specs[::2])  # every other one exists
    ledger_accounts(currency="USD", specs=specs)  # the same parties in another currency: not these
    ledger_accounts(currency="CNY", specs=[("channel_account", 6, "channel_clearing")])  # another channel account

    found = sale_terms_read(merchant_id=merchant.pk, currency="CNY", channel_account_id=5).account_ids

    assert found == {spec: (made[spec].pk if spec in made else None) for spec in specs}


def test_an_unknown_merchant_is_not_found():
    assert not sale_terms_read(merchant_id=987654, currency="CNY", channel_account_id=1).merchant_found
