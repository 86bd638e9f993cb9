"""Fee plans: one active plan per merchant and currency; a new plan replaces the active one (history is kept)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from core.errors import DomainError
from settlement.models import Cycle, FeeBearer, FeePlan


def fee_plan_set(
    *,
    merchant_id: int,
    currency: str,
    platform_rate_bp: int,
    platform_fixed_minor: int = 0,
    cycle: str = Cycle.T1,
    n_days: int = 0,
    reserve_bp: int = 0,
    reserve_days: int = 0,
    agent_commission_bp: list[int] | tuple[int, ...] = (),
    refund_fee_borne_by: str = FeeBearer.PLATFORM,
    split_at_provider: bool = False,
) -> FeePlan:
    """Make a new active plan for the merchant in `currency`; DomainError (code `commission_above_fee`, ...)
    and nothing changed when the plan is refused."""
    plan = FeePlan(
        merchant_id=merchant_id,
        currency=currency,
        platform_rate_bp=platform_rate_bp,
        platform_fixed_minor=platform_fixed_minor,
        cycle=cycle,
        n_days=n_days,
        reserve_bp=reserve_bp,
        reserve_days=reserve_days,
        agent_commission_bp=list(agent_commission_bp),
        refund_fee_borne_by=refund_fee_borne_by,
        split_at_provider=split_at_provider,
        is_active=True,
    )
    try:
        plan.full_clean(validate_constraints=False)
    except ValidationError as exc:
        codes = [e.code for errors in exc.error_dict.values() for e in errors]
        code = "commission_above_fee" if "commission_above_fee" in codes else "fee_plan_invalid"
        raise DomainError(code, "; ".join(exc.messages)) from exc
    with transaction.atomic():
        FeePlan.objects.filter(merchant_id=merchant_id, currency=currency, is_active=True).update(is_active=False)
        plan.save()
    return plan


def fee_plan_active(*, merchant_id: int, currency: str) -> FeePlan | None:
    return FeePlan.objects.filter(merchant_id=merchant_id, currency=currency, is_active=True).first()
