"""Smart routing's pure core: which channel accounts may take a payment, and in which order to try them.

Deterministic given its inputs and a `random.Random`: no Django, no I/O, no clock. The caller loads the accounts,
live health, breaker states and operator rules, tries `Decision.ranked` in order (failover happens at payment
creation, research/payments.md §1.3) and stores `Decision.explain()` on the payment. Must not import Django, the
ORM, Redis or any other payments module.

Steps, after Hyperswitch and Juspay's Decision Engine (research/payments.md §1.2): eligibility -> operator rules
(exclude, pin) -> breaker -> elimination (SR threshold, p95 latency cut-off, with a floor) -> ranking by amount tier
(cheapest / reliability / success rate then expected-value re-rank) -> breaker probe or exploration -> truncate.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

BP = 10_000  # basis points in a whole


class BreakerMode(StrEnum):
    """An account's breaker as routing sees it: the automatic states plus an operator's forced ones."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"


CLOSED, OPEN, HALF_OPEN = BreakerMode.CLOSED, BreakerMode.OPEN, BreakerMode.HALF_OPEN
FORCED_OPEN, FORCED_CLOSED = BreakerMode.FORCED_OPEN, BreakerMode.FORCED_CLOSED
BREAKER_STATES = frozenset(BreakerMode)

PIN = "pin"
EXCLUDE = "exclude"
# Most specific first: a product rule beats a merchant rule beats a global one.
SCOPES = ("product", "merchant", "global")


@dataclass(frozen=True)
class Candidate:
    """One channel account as routing sees it; fees in basis points plus a fixed part in minor units."""

    account_id: int
    code: str
    name: str
    enabled: bool
    currency: str
    methods: frozenset[str]
    fee_rate_bp: int
    fee_fixed_minor: int
    min_amount_minor: int | None
    max_amount_minor: int | None
    daily_cap_minor: int | None
    priority: int  # lower is preferred, as in ChannelAccount.Meta.ordering
    owner_merchant_id: int | None = None  # a merchant's own account: its split payments only

    def __post_init__(self) -> None:
        if self.fee_rate_bp < 0 or self.fee_fixed_minor < 0:
            raise ValueError(f"account {self.account_id}: fees must not be negative")


@dataclass(frozen=True)
class Health:
    """Live health of one account; success_rate already carries the optimistic prior for new accounts."""

    success_rate: float
    samples: int
    latency_p95_ms: float | None
    volume_today_minor: int

    def __post_init__(self) -> None:
        if not 0.0 <= self.success_rate <= 1.0:  # also rejects NaN, which would make sorting arbitrary
            raise ValueError(f"success_rate must be within [0, 1], got {self.success_rate!r}")


# An account the health store has never seen: as optimistic as the store's prior, so a new channel gets traffic.
UNMEASURED = Health(success_rate=1.0, samples=0, latency_p95_ms=None, volume_today_minor=0)


@dataclass(frozen=True)
class BreakerView:
    """An account's breaker for this request; for half_open the caller has drawn whether this request probes."""

    state: str = CLOSED
    probe_allowed: bool = False

    def __post_init__(self) -> None:
        if self.state not in BREAKER_STATES:
            raise ValueError(f"unknown breaker state {self.state!r}")

    @property
    def admits(self) -> bool:
        return self.state in (CLOSED, FORCED_CLOSED) or (self.state == HALF_OPEN and self.probe_allowed)

    @property
    def probing(self) -> bool:
        return self.state == HALF_OPEN and self.probe_allowed


BREAKER_CLOSED = BreakerView()


@dataclass(frozen=True)
class RoutingRequest:
    amount_minor: int
    currency: str
    method: str
    merchant_id: int | None = None
    product_ref: str = ""
    split_at_provider: bool = False  # the merchant's plan splits at the provider: its own accounts only


@dataclass(frozen=True)
class Rule:
    """An operator's pin or exclusion; product_ref set -> product rule (also bound to merchant_id if given),
    merchant_id only -> merchant rule, neither -> global."""

    kind: str
    account_id: int
    merchant_id: int | None = None
    product_ref: str = ""

    def __post_init__(self) -> None:
        if self.kind not in (PIN, EXCLUDE):
            raise ValueError(f"rule kind must be 'pin' or 'exclude', got {self.kind!r}")

    @property
    def scope(self) -> str:
        if self.product_ref:
            return "product"
        return "merchant" if self.merchant_id is not None else "global"

    def applies_to(self, request: RoutingRequest) -> bool:
        if self.product_ref and self.product_ref != request.product_ref:
            return False
        return self.merchant_id is None or self.merchant_id == request.merchant_id


@dataclass(frozen=True)
class RoutingConfig:
    sr_threshold: float = 0.5
    latency_cap_ms: float = 5000.0
    exploration_share: float = 0.05
    small_below_minor: int | None = None  # amount < this -> "cheapest"
    large_above_minor: int | None = None  # amount > this -> "reliability"
    max_attempts: int = 3
    # Share of the ticket a success earns, for EV = SR x (amount x margin - fee). 100 % gives the plain
    # SR x (amount - fee); Decision Engine's worked example (adyen over stripe) needs a 20 % margin.
    margin_bp: int = BP
    # "cheapest" ranks by fee only among accounts whose success rate is within this of the best one: a cheap
    # account that stopped converting must not keep the small payments.
    cheapest_sr_tolerance: float = 1.0
    # In the success-rate tier, accounts this close to the best rate count as equally reliable (a 200-outcome
    # window is only good to a couple of points) and the cheapest of them leads; the rest follow by EV.
    sr_tolerance: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.sr_threshold <= 1.0 or not 0.0 <= self.exploration_share <= 1.0:
            raise ValueError("sr_threshold and exploration_share must be within [0, 1]")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.margin_bp <= 0:
            raise ValueError("margin_bp must be positive")
        small, large = self.small_below_minor, self.large_above_minor
        if small is not None and large is not None and small > large:
            raise ValueError("small_below_minor must not exceed large_above_minor: the tiers would overlap")


@dataclass(frozen=True)
class Considered:
    """One candidate's fate. `score` is what its tier ranked by, higher is better: the net amount
    (amount - fee) for "cheapest", SR for "reliability", EV for "success_rate"; None when it did not survive."""

    account_id: int
    code: str
    eligible: bool
    reason: str
    success_rate: float
    latency_p95_ms: float | None
    fee_minor: int
    ev: float | None
    score: float | None


@dataclass(frozen=True)
class Decision:
    ranked: tuple[int, ...]  # account ids to try, best first, at most config.max_attempts
    approach: str  # pinned | cheapest | reliability | success_rate | cost_won | exploration | probe | only_one | none
    considered: tuple[Considered, ...]
    tier: str = ""  # the amount tier that ranked the survivors; "" when none survived
    notes: tuple[str, ...] = ()  # what overrode the plain pipeline: ignored pins, the floor, an EV promotion

    @property
    def head(self) -> int | None:
        return self.ranked[0] if self.ranked else None

    def explain(self) -> dict[str, Any]:
        """A small JSON-serialisable record of why the payment went where it went."""
        return {
            "approach": self.approach,
            "tier": self.tier,
            "ranked": list(self.ranked),
            "notes": list(self.notes),
            "candidates": [
                {
                    "id": c.account_id,
                    "code": c.code,
                    "ok": c.eligible,
                    "reason": c.reason,
                    "sr": round(c.success_rate, 4),
                    "p95": None if c.latency_p95_ms is None else round(c.latency_p95_ms, 1),
                    "fee": c.fee_minor,
                    "ev": None if c.ev is None else round(c.ev, 2),
                    "score": None if c.score is None else round(c.score, 4),
                }
                for c in self.considered
            ],
        }


def channel_fee_minor(amount_minor: int, *, rate_bp: int, fixed_minor: int) -> int:
    """A channel's fee on `amount_minor`: fixed part plus the rate, rounded half up, in exact integers."""
    if amount_minor < 0:
        raise ValueError("amount_minor must not be negative")
    return fixed_minor + (amount_minor * rate_bp + BP // 2) // BP


def fee_minor(candidate: Candidate, amount_minor: int) -> int:
    """The account's fee on `amount_minor` (see channel_fee_minor)."""
    return channel_fee_minor(amount_minor, rate_bp=candidate.fee_rate_bp, fixed_minor=candidate.fee_fixed_minor)


def decide(
    request: RoutingRequest,
    candidates: Iterable[Candidate],
    health: Mapping[int, Health],
    breakers: Mapping[int, BreakerView],
    rules: Iterable[Rule],
    config: RoutingConfig,
    rng: random.Random,
) -> Decision:
    """Rank the accounts that may take this payment, best first. Ties go to the lower priority, then account id."""
    amount = request.amount_minor
    ordered = sorted(candidates, key=_tiebreak)
    fees = {c.account_id: fee_minor(c, amount) for c in ordered}
    healths = {c.account_id: health.get(c.account_id, UNMEASURED) for c in ordered}
    views = {c.account_id: breakers.get(c.account_id, BREAKER_CLOSED) for c in ordered}
    reasons = {c.account_id: _ineligibility(c, request, healths[c.account_id]) for c in ordered}
    notes: list[str] = []

    excluded, pin_sets = _resolve_rules(rules, request)
    for account_id, reason in reasons.items():
        if not reason and account_id in excluded:
            reasons[account_id] = "excluded"
    # A pin holds only if a pinned account could really take the payment (breaker included), else the next
    # less specific pin applies, else none: pins steer traffic, they must not make the payment fail.
    pinned: frozenset[int] | None = None
    for scope, pins in pin_sets:
        if any(not reasons.get(a, "-") and views[a].admits for a in pins):
            pinned = pins
            break
        notes.append(f"{scope} pin ignored: none of {sorted(pins)} is eligible")
    if pinned is not None:
        for account_id, reason in reasons.items():
            if not reason and account_id not in pinned:
                reasons[account_id] = "not_pinned"

    for account_id, reason in reasons.items():
        if not reason and not views[account_id].admits:
            reasons[account_id] = "breaker_open"

    survivors = [c for c in ordered if not reasons[c.account_id]]
    # An operator's forced_closed and a breaker's half-open probe override the health figures: a probe judged
    # by the failures that opened the breaker would never run, and the breaker would never close.
    verdicts = {
        c.account_id: _elimination(healths[c.account_id], config)
        for c in survivors
        if views[c.account_id].state != FORCED_CLOSED and not views[c.account_id].probing
    }
    kept = [c for c in survivors if not verdicts.get(c.account_id)]
    # Accounts dropped on health alone are where fresh evidence is missing: exploration goes to them first,
    # or a recovered account would never be measured again.
    stale = [c.account_id for c in survivors if verdicts.get(c.account_id)]
    if survivors and not kept:
        best = min(survivors, key=lambda c: (-healths[c.account_id].success_rate, c.priority, c.account_id))
        kept = [best]
        verdicts[best.account_id] = ""
        notes.append(f"floor: every survivor failed elimination, kept {best.account_id} (best success rate)")
    for account_id, verdict in verdicts.items():
        reasons[account_id] = verdict
    survivors = kept

    tier = _tier(amount, config) if survivors else ""
    evs = {c.account_id: _ev(healths[c.account_id], amount, fees[c.account_id], config) for c in survivors}
    if tier == "cheapest":
        # Measured from the EV leader, not the highest rate: a rarely used account's rate is mostly
        # optimistic prior and must not squeeze the well-measured cheap ones out.
        lead = min(survivors, key=lambda c: (-evs[c.account_id], c.priority, c.account_id))
        best_sr = healths[lead.account_id].success_rate
        good = [c for c in survivors if healths[c.account_id].success_rate >= best_sr - config.cheapest_sr_tolerance]
        rest = [c for c in survivors if c not in good]
        ranked = sorted(good, key=lambda c: (fees[c.account_id], c.priority, c.account_id)) + sorted(
            rest, key=lambda c: (-healths[c.account_id].success_rate, c.priority, c.account_id)
        )
        scores = {c.account_id: float(amount - fees[c.account_id]) for c in survivors}
    else:
        ranked = sorted(survivors, key=lambda c: (-healths[c.account_id].success_rate, c.priority, c.account_id))
        scores = {c.account_id: healths[c.account_id].success_rate for c in survivors}
    approach = tier
    if tier == "success_rate" and ranked:
        sr_head = ranked[0]
        # Stable sort over the SR order: an account overtakes another only on a strictly higher EV.
        ranked = sorted(ranked, key=lambda c: -evs[c.account_id])
        # The band is measured from the EV leader, not the highest rate: a rarely used account's rate is
        # mostly optimistic prior and must not squeeze the well-measured ones out.
        lead_sr = healths[ranked[0].account_id].success_rate
        band = [c for c in ranked if healths[c.account_id].success_rate >= lead_sr - config.sr_tolerance]
        if config.sr_tolerance > 0:
            # Rates this close are equally reliable as far as a window can tell: the cheapest of them leads.
            cheapest = min(band, key=lambda c: (fees[c.account_id], -evs[c.account_id], c.priority, c.account_id))
            ranked.remove(cheapest)
            ranked.insert(0, cheapest)
        scores = evs
        if ranked[0] is not sr_head:
            approach = "cost_won"
            notes.append(f"cost_won: {ranked[0].account_id} over {sr_head.account_id} on expected value")
    order = [c.account_id for c in ranked]

    probes = [a for a in order if views[a].probing]
    if probes:
        order.remove(probes[0])
        order.insert(0, probes[0])
        approach = "probe"
    elif (pool := stale + [a for a in order[1:] if fees[a] <= fees[order[0]]] if order else stale) and (
        config.exploration_share > 0 and rng.random() < config.exploration_share
    ):
        # Exploration buys fresh evidence where it could change a decision: accounts dropped on health (they
        # may have recovered) and accounts no dearer than the head (their rate may be better than their last,
        # possibly unlucky, outcomes say). A dearer runner-up could not lead anyway: failover still reaches it.
        pick = pool[rng.randrange(len(pool))]
        if pick in order:
            order.remove(pick)
        order.insert(0, pick)
        approach = "exploration"
    elif not order:
        approach = "none"
    elif pinned is not None:
        approach = "pinned"
    elif len(order) == 1:
        approach = "only_one"

    considered = tuple(
        Considered(
            account_id=c.account_id,
            code=c.code,
            eligible=not reasons[c.account_id],
            reason=reasons[c.account_id],
            success_rate=healths[c.account_id].success_rate,
            latency_p95_ms=healths[c.account_id].latency_p95_ms,
            fee_minor=fees[c.account_id],
            ev=evs.get(c.account_id),
            score=scores.get(c.account_id),
        )
        for c in ordered
    )
    return Decision(
        ranked=tuple(order[: config.max_attempts]),
        approach=approach,
        considered=considered,
        tier=tier,
        notes=tuple(notes),
    )


def _tiebreak(c: Candidate) -> tuple[int, int]:
    return c.priority, c.account_id


def _ineligibility(c: Candidate, request: RoutingRequest, health: Health) -> str:
    amount = request.amount_minor
    if not c.enabled:
        return "disabled"
    # A merchant's own account holds that merchant's money only, and such a merchant is paid nowhere else.
    if c.owner_merchant_id is not None and c.owner_merchant_id != request.merchant_id:
        return "owned_by_another"
    if (c.owner_merchant_id is not None) != request.split_at_provider:
        return "split_at_provider" if request.split_at_provider else "merchant_owned"
    if c.currency != request.currency:
        return "currency"
    if request.method not in c.methods:
        return "method"
    if c.min_amount_minor is not None and amount < c.min_amount_minor:
        return "below_min"
    if c.max_amount_minor is not None and amount > c.max_amount_minor:
        return "above_max"
    if c.daily_cap_minor is not None and health.volume_today_minor + amount > c.daily_cap_minor:
        return "daily_cap"
    return ""


def _resolve_rules(
    rules: Iterable[Rule], request: RoutingRequest
) -> tuple[frozenset[int], list[tuple[str, frozenset[int]]]]:
    """Excluded account ids, and the pin sets that apply, most specific first.

    Per account, only its most specific applicable rules count; at one scope an exclusion beats a pin."""
    applicable = [r for r in rules if r.applies_to(request)]
    rank = {scope: i for i, scope in enumerate(SCOPES)}
    closest: dict[int, int] = {}
    for r in applicable:
        closest[r.account_id] = min(closest.get(r.account_id, len(SCOPES)), rank[r.scope])
    excluded = frozenset(
        r.account_id for r in applicable if r.kind == EXCLUDE and rank[r.scope] == closest[r.account_id]
    )
    pin_sets = []
    for scope in SCOPES:
        pins = frozenset(r.account_id for r in applicable if r.kind == PIN and r.scope == scope) - excluded
        if pins:
            pin_sets.append((scope, pins))
    return excluded, pin_sets


def _elimination(health: Health, config: RoutingConfig) -> str:
    if health.success_rate < config.sr_threshold:
        return "low_success_rate"
    if health.latency_p95_ms is not None and health.latency_p95_ms > config.latency_cap_ms:
        return "slow"
    return ""


def _ev(health: Health, amount_minor: int, fee: int, config: RoutingConfig) -> float:
    """Expected value in minor units: SR x (amount x margin - fee); the bracket stays an exact integer until
    one final division."""
    return health.success_rate * ((amount_minor * config.margin_bp - fee * BP) / BP)


def _tier(amount_minor: int, config: RoutingConfig) -> str:
    if config.small_below_minor is not None and amount_minor < config.small_below_minor:
        return "cheapest"
    if config.large_above_minor is not None and amount_minor > config.large_above_minor:
        return "reliability"
    return "success_rate"
