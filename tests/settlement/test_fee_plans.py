"""Fee plans: commissions that could exceed the platform fee are refused (clean() and the service)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from core.errors import DomainError
from settlement.models import FeePlan
from settlement.services.plans import fee_plan_active, fee_plan_set
from tests.factories.core import MerchantFactory

pytestmark = pytest.mark.django_db


def test_a_plan_whose_commissions_exceed_the_platform_rate_is_refused_by_the_service():
    merchant = MerchantFactory()

    with pytest.raises(DomainError) as refused:
        fee_plan_set(
            merchant_id=merchant.pk,
            currency="CNY",
            platform_rate_bp=500,
            platform_fixed_minor=10,
            agent_commission_bp=[300, 201],
        )

    assert refused.value.code == "commission_above_fee"
    assert not FeePlan.objects.exists()


def test_a_plan_whose_commissions_exceed_the_platform_rate_is_refused_by_clean():
    plan = FeePlan(
        merchant=MerchantFactory(), platform_rate_bp=100, platform_fixed_minor=1000, agent_commission_bp=[101]
    )
    with pytest.raises(ValidationError) as refused:
        plan.full_clean()
    assert "agent_commission_bp" in refused.value.message_dict


def test_commissions_equal_to_the_platform_rate_are_allowed():
    merchant = MerchantFactory()
    plan = fee_plan_set(merchant_id=merchant.pk, currency="CNY", platform_rate_bp=300, agent_commission_bp=[200, 100])
    assert plan.agent_commission_bp == [200, 100]


@pytest.mark.parametrize(
    "levels",
    [[-1], [1.5], ["100"], [True], [10, 10, 10, 10], {"1": 100}],
)
def test_malformed_commission_levels_are_refused(levels):
    merchant = MerchantFactory()
    with pytest.raises(DomainError) as refused:
        fee_plan_set(merchant_id=merchant.pk, currency="CNY", platform_rate_bp=500, agent_commission_bp=levels)
    assert refused.value.code == "fee_plan_invalid"
    assert not FeePlan.objects.exists()


def test_rates_beyond_the_sale_and_days_outside_d_plus_n_are_refused():
    merchant = MerchantFactory()
    with pytest.raises(DomainError):
        fee_plan_set(merchant_id=merchant.pk, currency="CNY", platform_rate_bp=6000, reserve_bp=4001)
    with pytest.raises(DomainError):
        fee_plan_set(merchant_id=merchant.pk, currency="CNY", platform_rate_bp=100, cycle="T+1", n_days=2)
    assert not FeePlan.objects.exists()
    plan = fee_plan_set(merchant_id=merchant.pk, currency="CNY", platform_rate_bp=100, cycle="D+N", n_days=2)
    assert (plan.cycle, plan.n_days) == ("D+N", 2)


def test_a_new_plan_replaces_the_active_one_and_keeps_the_old():
    merchant = MerchantFactory()
    old = fee_plan_set(merchant_id=merchant.pk, currency="CNY", platform_rate_bp=500)
    usd = fee_plan_set(merchant_id=merchant.pk, currency="USD", platform_rate_bp=290, platform_fixed_minor=30)

    new = fee_plan_set(merchant_id=merchant.pk, currency="CNY", platform_rate_bp=450)

    assert fee_plan_active(merchant_id=merchant.pk, currency="CNY") == new
    assert fee_plan_active(merchant_id=merchant.pk, currency="USD") == usd
    old.refresh_from_db()
    assert old.is_active is False and old.platform_rate_bp == 500
