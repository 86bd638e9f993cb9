"""How one sale's gross is shared: platform, each agent level, the merchant's reserve and the merchant.

Integer arithmetic only, largest remainder in two tiers so that the parts sum to the gross exactly and every
part, the platform fee included, is within one minor unit of its exact value. With G the gross in minor units,
r the platform rate, a_1..a_n the plan's agent levels that have an agent in the chain, s the reserve rate (all
basis points) and f the fixed fee:

  1. G is split by weights (r, s, 10000 - r - s) into the platform's rate part R, the reserve and the merchant's
     part: each exact share G*w/10000 is floored, and the minor units left over go one each to the largest
     remainders (ties to the earlier part): `core.money.allocate`. So R is G*r/10000 rounded up or down,
     whichever largest remainder decides (not always the nearest: 0.4 rounds up when the others hold 0.3).
  2. R is split among the agents and the platform with the same rule, aiming at each agent's exact share of the
     *sale* (G*a_i/10000) and the platform's G*(r - sum a_i)/10000: floors first, then R minus their sum goes
     one unit each to the largest remainders. Every commission is within one unit of a_i bp of the sale.
  3. The fixed fee f moves from the merchant's part to the platform's, capped at the merchant's part (a sale
     smaller than the fixed fee pays what it can; the merchant is never credited a negative amount).

    platform_fee = R + f                                (what the merchant is charged)
    merchant_net = G - platform_fee - reserve           (credited to pending, or available on T+0)
    platform_net = platform_fee - sum(agents)           (credited to platform revenue)

Worked example (tests/settlement/test_splits.py, test_sale_post.py): 9.99 CNY, platform 500 bp + 0.10, agents
200 bp (level 1) and 100 bp (level 2), reserve 1000 bp, channel 60 bp (5.994 fen, charged as 6).
  1. 999 by (500, 1000, 8500): exact 49.95 / 99.9 / 849.15, floors 49 + 99 + 849 = 997, the 2 left go to .95
     and .9: R = 50, reserve = 100, merchant 849.
  2. 50 aimed at 19.98 / 9.99 / 19.98: floors 19 + 9 + 19 = 47, the 3 left go one each: 20 / 10 / 20.
  3. fixed 10: platform_fee = 60, merchant_net = 839, platform_net = 30.
  Postings: channel clearing +993, channel fee expense +6; merchant pending -839, merchant reserve -100,
  agent 1 -20, agent 2 -10, platform revenue -30 (sum 0).

The reserve is basis points of the sale (the gross), as the issue words it ("basis points of each sale"), taken
from the merchant's share. Agent commissions are basis points of the sale, paid out of the platform fee; a plan
whose levels sum above r is refused when saved, so platform_net >= 0. A level with no agent in the chain (a
merchant under a one-level chain on a two-level plan) adds its share to the platform. The channel fee is the
platform's expense: it does not change the merchant's or the agents' parts, only what the channel remits.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.money import Money, allocate, currency_validate
from settlement.contracts import SettlementError

BP = 10000


class SplitError(SettlementError):
    pass


@dataclass(frozen=True)
class AgentShare:
    agent_id: int
    level: int  # 1 = the merchant's own agent
    amount_minor: int


@dataclass(frozen=True)
class Split:
    """Every part of one sale, in minor units of `currency`. gross = merchant_net + reserve + platform_fee."""

    gross_minor: int
    currency: str
    platform_fee_minor: int  # all the platform charges the merchant: its revenue plus the agents' commissions
    platform_net_minor: int  # what the platform keeps: platform_fee - sum(agents)
    agents: tuple[AgentShare, ...]
    reserve_minor: int
    merchant_net_minor: int
    channel_fee_minor: int  # the platform's expense, paid to the channel out of the gross
    channel_net_minor: int  # what the channel remits: gross - channel fee

    @property
    def agents_minor(self) -> int:
        return sum(a.amount_minor for a in self.agents)


@dataclass(frozen=True)
class PlanTerms:
    """The numbers of a fee plan a split needs (settlement.models.FeePlan carries them)."""

    platform_rate_bp: int
    platform_fixed_minor: int
    reserve_bp: int
    agent_commission_bp: tuple[int, ...]


def _terms(plan: object) -> PlanTerms:
    if isinstance(plan, PlanTerms):
        return plan
    return PlanTerms(
        platform_rate_bp=plan.platform_rate_bp,
        platform_fixed_minor=plan.platform_fixed_minor,
        reserve_bp=plan.reserve_bp,
        agent_commission_bp=tuple(plan.agent_commission_bp or ()),
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _allocate_to_targets(total: int, numerators: list[int], denominator: int) -> list[int]:
    """Whole parts of `total` near numerator/denominator each (their sum is within one unit of `total`): floors,
    then one unit each to the largest remainders, ties to the earlier part."""
    parts = [n // denominator for n in numerators]
    left = total - sum(parts)
    if not 0 <= left <= len(parts):
        raise SplitError("split_invalid", "targets do not add up to the total")
    order = sorted(range(len(parts)), key=lambda i: (-(numerators[i] % denominator), i))
    for i in order[:left]:
        parts[i] += 1
    return parts


def sale_split(
    gross_minor: int, currency: str, plan: object, agent_chain: list[int] | tuple[int, ...], channel_fee_minor: int
) -> Split:
    """The split of one sale; `plan` is a FeePlan or PlanTerms, `agent_chain` agent ids with level 1 first."""
    currency_validate(currency)
    terms = _terms(plan)
    if not _is_int(gross_minor) or gross_minor <= 0:
        raise SplitError("split_invalid", "the gross must be a positive whole number of minor units")
    if not _is_int(channel_fee_minor) or not 0 <= channel_fee_minor <= gross_minor:
        raise SplitError("split_invalid", "the channel fee must be a whole number between 0 and the gross")
    rate, reserve_bp, fixed = terms.platform_rate_bp, terms.reserve_bp, terms.platform_fixed_minor
    levels = terms.agent_commission_bp
    if not all(_is_int(v) and v >= 0 for v in (rate, reserve_bp, fixed, *levels)):
        raise SplitError("split_invalid", "plan rates and fees must be non-negative whole numbers")
    if sum(levels) > rate:
        raise SplitError("commission_above_fee", "agent commissions exceed the platform rate")
    if rate + reserve_bp > BP:
        raise SplitError("split_invalid", "the platform rate and the reserve exceed the sale")

    # Levels beyond the chain (no agent there) and agents beyond the plan's levels earn nothing.
    pairs = zip(agent_chain, levels, strict=False)
    paid_levels = [(level, agent_id, bp) for level, (agent_id, bp) in enumerate(pairs, 1) if bp]
    agent_bp = sum(bp for _, _, bp in paid_levels)
    rate_part, reserve, merchant = (
        m.amount_minor for m in allocate(Money(gross_minor, currency), [rate, reserve_bp, BP - rate - reserve_bp])
    )
    *agent_parts, platform_rest = _allocate_to_targets(
        rate_part, [gross_minor * bp for _, _, bp in paid_levels] + [gross_minor * (rate - agent_bp)], BP
    )
    fixed_taken = min(fixed, merchant)
    merchant -= fixed_taken
    platform_net = platform_rest + fixed_taken
    agents = tuple(
        AgentShare(agent_id=agent_id, level=level, amount_minor=amount)
        for (level, agent_id, _), amount in zip(paid_levels, agent_parts, strict=True)
    )
    return Split(
        gross_minor=gross_minor,
        currency=currency,
        platform_fee_minor=platform_net + sum(agent_parts),
        platform_net_minor=platform_net,
        agents=agents,
        reserve_minor=reserve,
        merchant_net_minor=merchant,
        channel_fee_minor=channel_fee_minor,
        channel_net_minor=gross_minor - channel_fee_minor,
    )
