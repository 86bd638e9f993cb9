import factory

from settlement.models import Cycle, FeePlan
from tests.factories.core import MerchantFactory


class FeePlanFactory(factory.django.DjangoModelFactory):
    """The issue's worked-example plan: 500 bp + 0.10 CNY, agents 200 / 100 bp, reserve 1000 bp for 7 days, T+1."""

    class Meta:
        model = FeePlan

    merchant = factory.SubFactory(MerchantFactory)
    currency = "CNY"
    platform_rate_bp = 500
    platform_fixed_minor = 10
    cycle = Cycle.T1
    reserve_bp = 1000
    reserve_days = 7
    agent_commission_bp = factory.LazyFunction(lambda: [200, 100])
