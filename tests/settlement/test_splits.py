"""settlement.splits.sale_split: integer parts that always sum to the gross (largest remainder)."""

from __future__ import annotations

import random

import pytest

from settlement.contracts import SettlementError
from settlement.splits import PlanTerms, sale_split

EXAMPLE = PlanTerms(platform_rate_bp=500, platform_fixed_minor=10, reserve_bp=1000, agent_commission_bp=(200, 100))


def parts_sum(split) -> int:
    return split.merchant_net_minor + split.reserve_minor + split.platform_net_minor + split.agents_minor


def test_worked_example_splits_nine_ninety_nine_exactly():
    # 9.99 CNY, platform 500 bp + 0.10, agents 200 bp (level 1) and 100 bp (level 2), reserve 1000 bp,
    # channel 60 bp of 999 = 5.994, which the channel charges as 6 fen.
    split = sale_split(999, "CNY", EXAMPLE, [41, 42], 6)

    # Tier 1, 999 by (500, 1000, 8500): exact 49.95, 99.9, 849.15; floors 49 + 99 + 849 = 997, the 2 fen left go
    # to the remainders .95 and .9: rate part 50, reserve 100, merchant 849 (before the fixed fee).
    # Tier 2, the 50 among agent 1 (19.98), agent 2 (9.99), platform (19.98): floors 19 + 9 + 19 = 47, 3 left.
    assert [(a.agent_id, a.level, a.amount_minor) for a in split.agents] == [(41, 1, 20), (42, 2, 10)]
    assert split.reserve_minor == 100
    assert split.platform_fee_minor == 60  # round(49.95) = 50, plus the 10 fen fixed fee
    assert split.platform_net_minor == 30  # 60 - 20 - 10
    assert split.merchant_net_minor == 839  # 999 - 60 - 100
    assert split.channel_fee_minor == 6
    assert split.channel_net_minor == 993
    assert parts_sum(split) == 999


def test_parts_always_sum_to_the_gross_and_stay_within_a_unit_of_exact():
    rng = random.Random(11)
    plans = [EXAMPLE] + [
        PlanTerms(
            platform_rate_bp=(rate := rng.randint(0, 3000)),
            platform_fixed_minor=rng.choice([0, 1, 10, 30, 500]),
            reserve_bp=rng.randint(0, 10000 - rate),
            agent_commission_bp=tuple(rng.randint(0, rate // 3) for _ in range(rng.randint(0, 3))),
        )
        for _ in range(60)
    ]
    amounts = list(range(1, 400)) + [rng.randint(1, 10**9) for _ in range(200)] + [10**12 + 7]
    for plan in plans:
        chain = list(range(1, len(plan.agent_commission_bp) + 1))
        for gross in amounts:
            fee = gross * 60 // 10000
            split = sale_split(gross, "CNY", plan, chain, fee)
            assert parts_sum(split) == gross, (plan, gross)
            assert min(split.merchant_net_minor, split.reserve_minor, split.platform_net_minor) >= 0
            assert split.platform_fee_minor - split.agents_minor == split.platform_net_minor >= 0
            assert split.channel_net_minor + split.channel_fee_minor == gross
            assert abs(split.reserve_minor * 10000 - gross * plan.reserve_bp) < 10000
            paid_bp = [b for b in plan.agent_commission_bp if b]
            for share, bp in zip(split.agents, paid_bp, strict=True):
                assert abs(share.amount_minor * 10000 - gross * bp) < 10000
            if gross * (10000 - plan.platform_rate_bp - plan.reserve_bp) >= (plan.platform_fixed_minor + 1) * 10000:
                # The merchant's part covers the fixed fee: the platform gets all of it, and its fee and its own
                # share are each within a unit of exact.
                exact_fee = gross * plan.platform_rate_bp + plan.platform_fixed_minor * 10000
                assert abs(split.platform_fee_minor * 10000 - exact_fee) < 10000
                rest = split.platform_net_minor - plan.platform_fixed_minor
                assert rest >= 0 and abs(rest * 10000 - gross * (plan.platform_rate_bp - sum(paid_bp))) < 10000


def test_a_sale_smaller_than_the_fixed_fee_never_credits_the_merchant_a_negative_amount():
    split = sale_split(5, "CNY", EXAMPLE, [1, 2], 0)
    assert split.merchant_net_minor == 0
    assert split.reserve_minor == 1  # 0.5 fen, rounded up by largest remainder
    assert parts_sum(split) == 5
    assert split.platform_fee_minor == 4  # what was left of the 10 fen fixed fee, plus its rate part


def test_levels_without_an_agent_go_to_the_platform_and_agents_beyond_the_plan_get_nothing():
    one_level = sale_split(999, "CNY", EXAMPLE, [7], 6)
    assert [(a.agent_id, a.amount_minor) for a in one_level.agents] == [(7, 20)]
    assert one_level.platform_net_minor == 40  # its own 20 plus the missing level's 10, plus the fixed 10
    assert parts_sum(one_level) == 999

    no_agent = sale_split(999, "CNY", EXAMPLE, [], 6)
    assert no_agent.agents == () and no_agent.platform_net_minor == 60

    short_plan = PlanTerms(platform_rate_bp=500, platform_fixed_minor=0, reserve_bp=0, agent_commission_bp=(200,))
    deep = sale_split(10000, "CNY", short_plan, [1, 2, 3], 0)
    assert [(a.agent_id, a.amount_minor) for a in deep.agents] == [(1, 200)]


@pytest.mark.parametrize(
    ("gross", "fee", "plan"),
    [
        (0, 0, EXAMPLE),
        (-5, 0, EXAMPLE),
        (100, 101, EXAMPLE),
        (True, 0, EXAMPLE),
        (100, 1.5, EXAMPLE),
        (100, 0, PlanTerms(platform_rate_bp=100, platform_fixed_minor=0, reserve_bp=0, agent_commission_bp=(101,))),
        (100, 0, PlanTerms(platform_rate_bp=5000, platform_fixed_minor=0, reserve_bp=5001, agent_commission_bp=())),
    ],
)
def test_impossible_inputs_are_refused(gross, fee, plan):
    with pytest.raises(SettlementError):
        sale_split(gross, "CNY", plan, [1, 2], fee)
