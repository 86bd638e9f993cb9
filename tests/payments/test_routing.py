"""Smart routing's pure core: eligibility, operator rules, breaker, elimination, tiers, EV re-rank, exploration."""

import json
import random

import pytest

from payments.routing import (
    BreakerView,
    Candidate,
    Decision,
    Health,
    RoutingConfig,
    RoutingRequest,
    Rule,
    decide,
    fee_minor,
)

NO_EXPLORATION = RoutingConfig(exploration_share=0.0)


def _cand(account_id, **kw):
    fields = dict(
        account_id=account_id,
        code=f"ch{account_id}",
        name=f"Channel {account_id}",
        enabled=True,
        currency="CNY",
        methods=frozenset({"alipay", "wechat"}),
        fee_rate_bp=60,
        fee_fixed_minor=0,
        min_amount_minor=None,
        max_amount_minor=None,
        daily_cap_minor=None,
        priority=100,
    )
    fields.update(kw)
    return Candidate(**fields)


def _health(sr=0.95, *, samples=200, p95=300.0, volume=0):
    return Health(success_rate=sr, samples=samples, latency_p95_ms=p95, volume_today_minor=volume)


def _req(amount=10_000, **kw):
    return RoutingRequest(
        amount_minor=amount, currency=kw.pop("currency", "CNY"), method=kw.pop("method", "alipay"), **kw
    )


def _decide(candidates, *, request=None, health=None, breakers=None, rules=(), config=NO_EXPLORATION, seed=1):
    return decide(request or _req(), candidates, health or {}, breakers or {}, rules, config, random.Random(seed))


def _reason(decision: Decision, account_id: int) -> str:
    return next(c.reason for c in decision.considered if c.account_id == account_id)


# --- fees -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "rate_bp", "fixed", "expected"),
    [
        (50, 100, 0, 1),  # 0.50 -> rounds half up
        (49, 100, 0, 0),  # 0.49 -> down
        (5_000, 1, 0, 1),  # 0.5
        (4_999, 1, 0, 0),  # 0.4999
        (12_345, 180, 0, 222),  # 222.21
        (12_375, 180, 30, 253),  # 222.75 -> 223, plus 30 fixed
        (0, 180, 30, 30),
        (10**15 + 1, 33, 0, 3_300_000_000_000),  # 3300000000000.0033: exact where a float would not be
        (10**15 + 5_000, 1, 7, 100_000_000_008),  # 100000000000.5 -> half up, plus 7
    ],
)
def test_fee_is_fixed_plus_rate_rounded_half_up_in_integers(amount, rate_bp, fixed, expected):
    fee = fee_minor(_cand(1, fee_rate_bp=rate_bp, fee_fixed_minor=fixed), amount)

    assert fee == expected
    assert isinstance(fee, int)


def test_fee_refuses_a_negative_amount():
    with pytest.raises(ValueError):
        fee_minor(_cand(1), -1)


# --- eligibility ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "volume", "reason"),
    [
        (_cand(2, enabled=False), 0, "disabled"),
        (_cand(2, currency="USD"), 0, "currency"),
        (_cand(2, methods=frozenset({"wechat"})), 0, "method"),
        (_cand(2, min_amount_minor=10_001), 0, "below_min"),
        (_cand(2, max_amount_minor=9_999), 0, "above_max"),
        (_cand(2, daily_cap_minor=50_000), 40_001, "daily_cap"),
    ],
)
def test_each_eligibility_reason_takes_the_account_out(candidate, volume, reason):
    decision = _decide([_cand(1), candidate], health={1: _health(), 2: _health(volume=volume)})

    assert decision.ranked == (1,)
    assert _reason(decision, 2) == reason
    assert [c.eligible for c in decision.considered] == [True, False]


def test_eligibility_bounds_are_inclusive():
    candidate = _cand(1, min_amount_minor=10_000, max_amount_minor=10_000, daily_cap_minor=50_000)

    decision = _decide([candidate], health={1: _health(volume=40_000)})

    assert decision.ranked == (1,)
    assert _reason(decision, 1) == ""


def test_eligibility_reports_the_first_failing_check():
    decision = _decide([_cand(1, enabled=False, currency="USD", methods=frozenset())])

    assert _reason(decision, 1) == "disabled"
    assert decision.ranked == ()
    assert decision.approach == "none"
    assert decision.tier == ""


def test_an_account_without_health_is_scored_optimistically():
    decision = _decide([_cand(1), _cand(2)], health={1: _health(0.9)})

    assert decision.ranked == (2, 1)
    assert decision.considered[1].success_rate == 1.0


# --- operator rules ---------------------------------------------------------------------------------------------


def test_a_global_exclusion_takes_the_account_out():
    decision = _decide([_cand(1), _cand(2)], rules=[Rule("exclude", 1)])

    assert decision.ranked == (2,)
    assert _reason(decision, 1) == "excluded"


def test_a_pin_restricts_routing_to_the_pinned_accounts():
    request = _req(merchant_id=7)

    decision = _decide([_cand(1), _cand(2), _cand(3)], request=request, rules=[Rule("pin", 2, merchant_id=7)])

    assert decision.ranked == (2,)
    assert decision.approach == "pinned"
    assert [c.reason for c in decision.considered] == ["not_pinned", "", "not_pinned"]


def test_rules_of_another_merchant_or_product_do_not_apply():
    rules = [Rule("exclude", 1, merchant_id=8), Rule("pin", 2, product_ref="other"), Rule("pin", 2, 7, "p1")]

    decision = _decide([_cand(1), _cand(2)], request=_req(merchant_id=9, product_ref="p1"), rules=rules)

    assert decision.ranked == (1, 2)
    assert decision.approach == "success_rate"


def test_a_product_rule_beats_a_merchant_rule_beats_a_global_rule():
    request = _req(merchant_id=7, product_ref="p1")
    rules = [
        Rule("exclude", 1),  # global exclusion ...
        Rule("pin", 1, merchant_id=7),  # ... overridden by the merchant's pin
        Rule("exclude", 2, merchant_id=7),  # merchant exclusion ...
        Rule("pin", 2, merchant_id=7, product_ref="p1"),  # ... overridden by the product's pin
        Rule("exclude", 3, merchant_id=7, product_ref="p1"),
        Rule("pin", 3, merchant_id=7),  # the product's exclusion wins over the merchant's pin
    ]

    decision = _decide([_cand(1), _cand(2), _cand(3), _cand(4)], request=request, rules=rules)

    # The product pin set {2} holds and wins over the merchant pin set {1}.
    assert decision.ranked == (2,)
    assert [c.reason for c in decision.considered] == ["not_pinned", "", "excluded", "not_pinned"]
    assert decision.approach == "pinned"


def test_at_one_scope_an_exclusion_beats_a_pin():
    decision = _decide([_cand(1), _cand(2)], rules=[Rule("pin", 1), Rule("exclude", 1)])

    assert decision.ranked == (2,)
    assert _reason(decision, 1) == "excluded"


def test_a_pin_without_an_eligible_account_is_ignored_with_a_note():
    decision = _decide([_cand(1, currency="USD"), _cand(2), _cand(3)], rules=[Rule("pin", 1), Rule("pin", 9)])

    assert decision.ranked == (2, 3)
    assert decision.approach == "success_rate"
    assert decision.notes == ("global pin ignored: none of [1, 9] is eligible",)
    assert [c.reason for c in decision.considered] == ["currency", "", ""]


def test_an_unusable_product_pin_falls_back_to_the_merchant_pin():
    request = _req(merchant_id=7, product_ref="p1")
    rules = [Rule("pin", 1, product_ref="p1"), Rule("pin", 2, merchant_id=7)]

    decision = _decide([_cand(1), _cand(2), _cand(3)], request=request, rules=rules, breakers={1: BreakerView("open")})

    assert decision.ranked == (2,)
    assert decision.approach == "pinned"
    assert decision.notes == ("product pin ignored: none of [1] is eligible",)


# --- breaker ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("view", "admitted"),
    [
        (BreakerView("closed"), True),
        (BreakerView("open"), False),
        (BreakerView("forced_open"), False),
        (BreakerView("half_open", probe_allowed=False), False),
        (BreakerView("half_open", probe_allowed=True), True),
        (BreakerView("forced_closed"), True),
    ],
)
def test_breaker_states(view, admitted):
    decision = _decide([_cand(1), _cand(2)], breakers={2: view})

    assert (2 in decision.ranked) is admitted
    assert _reason(decision, 2) == ("" if admitted else "breaker_open")


def test_a_half_open_probe_goes_first_despite_its_poor_health():
    health = {1: _health(0.95), 2: _health(0.10, p95=9_000.0)}

    decision = _decide([_cand(1), _cand(2)], health=health, breakers={2: BreakerView("half_open", probe_allowed=True)})

    assert decision.ranked == (2, 1)
    assert decision.approach == "probe"


def test_forced_closed_is_exempt_from_elimination():
    health = {1: _health(0.95), 2: _health(0.10)}

    decision = _decide([_cand(1), _cand(2)], health=health, breakers={2: BreakerView("forced_closed")})

    assert decision.ranked == (1, 2)
    assert _reason(decision, 2) == ""


def test_an_unknown_breaker_state_is_refused():
    with pytest.raises(ValueError):
        BreakerView("ajar")


# --- elimination ------------------------------------------------------------------------------------------------


def test_elimination_removes_low_success_rate_and_slow_accounts():
    health = {1: _health(0.49), 2: _health(0.9, p95=5_000.1), 3: _health(0.5, p95=5_000.0), 4: _health(0.6, p95=None)}

    decision = _decide([_cand(1), _cand(2), _cand(3), _cand(4)], health=health)

    assert decision.ranked == (4, 3)
    assert [c.reason for c in decision.considered] == ["low_success_rate", "slow", "", ""]


def test_the_floor_keeps_the_best_account_when_elimination_would_remove_all():
    health = {1: _health(0.2), 2: _health(0.4, p95=9_000.0), 3: _health(0.3)}

    decision = _decide([_cand(1), _cand(2), _cand(3)], health=health)

    assert decision.ranked == (2,)
    assert decision.approach == "only_one"
    assert decision.notes == ("floor: every survivor failed elimination, kept 2 (best success rate)",)
    assert [c.reason for c in decision.considered] == ["low_success_rate", "", "low_success_rate"]


# --- tiers ------------------------------------------------------------------------------------------------------


def _tiered():
    candidates = [_cand(1, fee_rate_bp=250), _cand(2, fee_rate_bp=60, fee_fixed_minor=10), _cand(3, fee_rate_bp=100)]
    health = {1: _health(0.99), 2: _health(0.80), 3: _health(0.90)}
    return candidates, health, RoutingConfig(exploration_share=0.0, small_below_minor=1_000, large_above_minor=50_000)


@pytest.mark.parametrize(
    ("amount", "tier", "ranked"),
    [
        (999, "cheapest", (3, 2, 1)),  # fees 10, 16, 25
        (50_001, "reliability", (1, 3, 2)),
        (1_000, "success_rate", (1, 3, 2)),  # boundaries belong to the middle tier
        (50_000, "success_rate", (1, 3, 2)),
    ],
)
def test_amount_tiers(amount, tier, ranked):
    candidates, health, config = _tiered()

    decision = _decide(candidates, request=_req(amount), health=health, config=config)

    assert decision.tier == tier
    assert decision.approach == tier
    assert decision.ranked == ranked


def test_cheapest_tier_scores_by_net_amount():
    candidates, health, config = _tiered()

    decision = _decide(candidates, request=_req(999), health=health, config=config)

    assert [c.score for c in decision.considered] == [974.0, 983.0, 989.0]


def test_ties_go_to_the_lower_priority_then_the_lower_account_id():
    candidates = [_cand(4, priority=5), _cand(3, priority=1), _cand(2, priority=5), _cand(1, priority=9)]

    decision = _decide(candidates, config=RoutingConfig(exploration_share=0.0, max_attempts=4))

    assert decision.ranked == (3, 2, 4, 1)
    assert [c.account_id for c in decision.considered] == [3, 2, 4, 1]


def test_ranking_is_truncated_to_max_attempts():
    candidates = [_cand(i) for i in range(1, 6)]

    decision = _decide(candidates, config=RoutingConfig(exploration_share=0.0, max_attempts=2))

    assert decision.ranked == (1, 2)
    assert all(c.eligible for c in decision.considered)


def test_a_single_survivor_is_only_one():
    decision = _decide([_cand(1), _cand(2, enabled=False)])

    assert decision.ranked == (1,)
    assert decision.approach == "only_one"


# --- expected-value re-rank (Decision Engine's stripe 0.94 / 180 bp vs adyen 0.91 / 100 bp) -----------------------

STRIPE = _cand(1, code="stripe", fee_rate_bp=180)
ADYEN = _cand(2, code="adyen", fee_rate_bp=100)


def test_ev_keeps_the_sr_head_when_the_cheaper_account_earns_less():
    health = {1: _health(0.94), 2: _health(0.91)}

    decision = _decide([STRIPE, ADYEN], health=health)

    # EV = SR x (amount - fee): 0.94 x 9820 = 9230.8 beats 0.91 x 9900 = 9009.0; saving 80 bp is not worth 3 pp.
    assert decision.ranked == (1, 2)
    assert decision.approach == "success_rate"
    assert [round(c.ev, 1) for c in decision.considered] == [9230.8, 9009.0]


def test_ev_promotes_the_cheaper_account_when_it_earns_strictly_more():
    health = {1: _health(0.94), 2: _health(0.935)}

    decision = _decide([STRIPE, ADYEN], health=health)

    # 0.935 x 9900 = 9256.5 > 9230.8
    assert decision.ranked == (2, 1)
    assert decision.approach == "cost_won"
    assert decision.notes == ("cost_won: 2 over 1 on expected value",)


def test_ev_with_decision_engines_twenty_percent_margin_promotes_adyen():
    health = {1: _health(0.94), 2: _health(0.91)}
    config = RoutingConfig(exploration_share=0.0, margin_bp=2_000)

    decision = _decide([STRIPE, ADYEN], health=health, config=config)

    # 0.91 x (2000 - 100) = 1729.0 > 0.94 x (2000 - 180) = 1710.8
    assert decision.ranked == (2, 1)
    assert decision.approach == "cost_won"


def test_ev_does_not_promote_on_an_equal_ev():
    candidates = [_cand(1, fee_rate_bp=5_000), _cand(2, fee_rate_bp=0)]
    health = {1: _health(1.0), 2: _health(0.5)}

    decision = _decide(
        candidates, request=_req(1_000), health=health, config=RoutingConfig(exploration_share=0.0, sr_threshold=0.0)
    )

    # 1.0 x (1000 - 500) == 0.5 x (1000 - 0)
    assert [c.ev for c in decision.considered] == [500.0, 500.0]
    assert decision.ranked == (1, 2)
    assert decision.approach == "success_rate"


# --- exploration and determinism ----------------------------------------------------------------------------------


def test_exploration_share_is_honoured_and_spreads_over_non_head_accounts():
    candidates = [_cand(1), _cand(2), _cand(3), _cand(4)]
    health = {1: _health(0.99), 2: _health(0.95), 3: _health(0.90), 4: _health(0.85)}
    config = RoutingConfig(exploration_share=0.05, max_attempts=4)
    rng = random.Random(20240601)
    heads = {}

    for _ in range(10_000):
        decision = decide(_req(), candidates, health, {}, (), config, rng)
        if decision.approach == "exploration":
            heads[decision.ranked[0]] = heads.get(decision.ranked[0], 0) + 1
            assert sorted(decision.ranked) == [1, 2, 3, 4]
        else:
            assert decision.ranked == (1, 2, 3, 4)

    explored = sum(heads.values())
    assert 430 <= explored <= 570  # 5 % +- 0.7 %
    assert set(heads) == {2, 3, 4}
    assert min(heads.values()) > explored / 3 * 0.7


def test_exploration_needs_more_than_one_survivor():
    rng = random.Random(3)

    decisions = [decide(_req(), [_cand(1)], {}, {}, (), RoutingConfig(exploration_share=1.0), rng) for _ in range(50)]

    assert {d.approach for d in decisions} == {"only_one"}


def test_same_seed_same_decisions():
    candidates = [_cand(i, fee_rate_bp=40 * i, priority=i % 2) for i in range(1, 6)]
    health = {i: _health(0.80 + i / 100) for i in range(1, 6)}
    config = RoutingConfig(exploration_share=0.3)

    def run(seed):
        rng = random.Random(seed)
        return [decide(_req(), candidates, health, {}, (), config, rng).ranked for _ in range(200)]

    assert run(42) == run(42)
    assert run(42) != run(43)


# --- explain ----------------------------------------------------------------------------------------------------


def test_explain_is_small_and_json_serialisable():
    rules = [Rule("exclude", 3), Rule("pin", 9)]
    health = {1: _health(0.94), 2: _health(0.935, p95=None), 4: _health(0.1)}

    decision = _decide([STRIPE, ADYEN, _cand(3), _cand(4)], health=health, rules=rules)
    text = json.dumps(decision.explain())

    assert len(text) < 1_200
    assert json.loads(text) == {
        "approach": "cost_won",
        "tier": "success_rate",
        "ranked": [2, 1],
        "notes": ["global pin ignored: none of [9] is eligible", "cost_won: 2 over 1 on expected value"],
        "candidates": [
            {"id": 1, "code": "stripe", "ok": True, "reason": "", "sr": 0.94, "p95": 300.0, "fee": 180,
             "ev": 9230.8, "score": 9230.8},
            {"id": 2, "code": "adyen", "ok": True, "reason": "", "sr": 0.935, "p95": None, "fee": 100,
             "ev": 9256.5, "score": 9256.5},
            {"id": 3, "code": "ch3", "ok": False, "reason": "excluded", "sr": 1.0, "p95": None, "fee": 60,
             "ev": None, "score": None},
            {"id": 4, "code": "ch4", "ok": False, "reason": "low_success_rate", "sr": 0.1, "p95": 300.0, "fee": 60,
             "ev": None, "score": None},
        ],
    }  # fmt: skip


# --- validation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"exploration_share": 1.5},
        {"sr_threshold": -0.1},
        {"margin_bp": 0},
        {"small_below_minor": 10_000, "large_above_minor": 5_000},
    ],
)
def test_inconsistent_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        RoutingConfig(**kwargs)


def test_malformed_inputs_are_refused():
    with pytest.raises(ValueError):
        Rule("prefer", 1)
    with pytest.raises(ValueError):
        Health(success_rate=float("nan"), samples=0, latency_p95_ms=None, volume_today_minor=0)
    with pytest.raises(ValueError):
        _cand(1, fee_rate_bp=-1)


# --- the lessons of bench/routing_sim.py -------------------------------------------------------------------------


def test_cheapest_tier_skips_a_cheap_account_that_stopped_converting():
    cheap, dear = _cand(1, fee_rate_bp=60, priority=1), _cand(2, fee_rate_bp=100, priority=2)
    config = RoutingConfig(exploration_share=0.0, small_below_minor=1000, cheapest_sr_tolerance=0.05)
    healthy = _decide([cheap, dear], request=_req(500), health={1: _health(0.95), 2: _health(0.94)}, config=config)
    assert healthy.ranked == (1, 2) and healthy.approach == "cheapest"
    falling = _decide([cheap, dear], request=_req(500), health={1: _health(0.80), 2: _health(0.94)}, config=config)
    assert falling.ranked == (2, 1)  # still above the elimination threshold, but 14 points behind the best


def test_exploration_goes_to_accounts_dropped_on_health_so_they_can_come_back():
    head, other, dropped = _cand(1, priority=1), _cand(2, priority=2, fee_rate_bp=100), _cand(3, priority=3)
    health = {1: _health(0.95), 2: _health(0.94), 3: _health(0.30)}
    config = RoutingConfig(exploration_share=0.05)
    rng = random.Random(11)
    firsts = [decide(_req(), [head, other, dropped], health, {}, (), config, rng).ranked[0] for _ in range(10_000)]
    share_dropped = firsts.count(3) / len(firsts)
    assert 0.043 <= share_dropped <= 0.057  # the whole exploration share measures the dropped account
    assert firsts.count(2) == 0  # a dearer healthy runner-up needs no exploration while one is dropped


def test_margin_makes_a_small_success_rate_edge_not_worth_a_large_fee():
    cheap, dear = _cand(1, fee_rate_bp=60), _cand(2, fee_rate_bp=290, fee_fixed_minor=30)
    health = {1: _health(0.95), 2: _health(0.96)}
    full = _decide([cheap, dear], request=_req(5000), health=health)
    assert full.ranked[0] == 1  # already at 100 % margin the fee gap wins here
    narrow = _decide(
        [cheap, dear], request=_req(5000), health={1: _health(0.93), 2: _health(0.96)}, config=NO_EXPLORATION
    )
    assert narrow.ranked[0] == 2  # 3 points of success rate beat 2.3 % of fee at a 100 % margin...
    margin = RoutingConfig(exploration_share=0.0, margin_bp=2000)
    assert (
        _decide([cheap, dear], request=_req(5000), health={1: _health(0.93), 2: _health(0.96)}, config=margin).ranked[0]
        == 1
    )  # ...but not when a success earns the merchant 20 % of the ticket


def test_a_rarely_used_account_with_a_prior_high_rate_does_not_squeeze_out_the_measured_cheap_ones():
    cheap, card = _cand(1, fee_rate_bp=60, priority=1), _cand(2, fee_rate_bp=290, fee_fixed_minor=30, priority=2)
    health = {1: _health(0.93), 2: _health(0.99, samples=3)}  # the card account is barely measured
    config = RoutingConfig(exploration_share=0.0, small_below_minor=1000, cheapest_sr_tolerance=0.05, margin_bp=2000)
    assert _decide([cheap, card], request=_req(500), health=health, config=config).ranked[0] == 1
    config = RoutingConfig(exploration_share=0.0, sr_tolerance=0.05, margin_bp=2000)
    assert _decide([cheap, card], request=_req(5000), health=health, config=config).ranked[0] == 1


def test_exploration_never_spends_on_a_dearer_runner_up():
    cheap, dear = _cand(1, fee_rate_bp=60), _cand(2, fee_rate_bp=290)
    config = RoutingConfig(exploration_share=0.5)
    rng = random.Random(3)
    heads = {decide(_req(), [cheap, dear], {}, {}, (), config, rng).ranked[0] for _ in range(500)}
    assert heads == {1}


# --- a merchant's own accounts (split at the provider, issue 12) ------------------------------------------------


def test_a_merchants_own_account_takes_only_that_merchants_split_payments():
    platform, own, others = _cand(1), _cand(2, owner_merchant_id=7), _cand(3, owner_merchant_id=8)
    split = _decide([platform, own, others], request=_req(merchant_id=7, split_at_provider=True))
    assert list(split.ranked) == [2]
    assert _reason(split, 1) == "split_at_provider" and _reason(split, 3) == "owned_by_another"

    plain = _decide([platform, own, others], request=_req(merchant_id=7))
    assert list(plain.ranked) == [1]  # its own account holds split payments only
    assert _reason(plain, 2) == "merchant_owned" and _reason(plain, 3) == "owned_by_another"
