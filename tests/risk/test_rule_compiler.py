"""The rule closures (risk.rule_compiler) answer exactly as rule-engine does: on random rules over the schema's
features and random feature values near the rules' literals, and on the rules a shop starts with."""

from __future__ import annotations

import random

import pytest

from risk.defaults import DEFAULT_RULES
from risk.rule_compiler import rule_test, well_typed
from risk.rules import RuleInvalid, compiled_for, rule_compile, rules_matching
from risk.schema import FEATURE_TYPES

NUMERIC = [n for n, kind in FEATURE_TYPES.items() if kind in (int, float)]
BOOLS = [n for n, kind in FEATURE_TYPES.items() if kind is bool]
LITERALS = ["0", "1", "2", "3", "5", "10", "0.5", "0.3", "0.1", "2.50", "1e3", "0.30000000000000001", "-1", "7.25"]
DOMAINS = ["example.com", "mailinator.com", "qq.com", "", "mail.ru"]


def reference(rule, features) -> bool:
    """rule-engine's own answer, as risk.rules treats it (an evaluation error is no match)."""
    try:
        return rule.matches(features)
    except Exception:
        return False


def atom(rng: random.Random) -> str:
    pick = rng.randrange(14)
    op = rng.choice(["<", "<=", ">", ">=", "==", "!="])
    if pick < 4:
        return f"{rng.choice(NUMERIC)} {op} {rng.choice(LITERALS)}"
    if pick == 4:
        return f"{rng.choice(LITERALS)} {op} {rng.choice(NUMERIC)}"
    if pick == 5:
        return f"{rng.choice(NUMERIC)} {op} {rng.choice(NUMERIC)}"
    if pick == 6:
        return rng.choice(BOOLS) + rng.choice(["", " == true", " != false", " == 1", " == null"])
    if pick == 7:
        members = ", ".join(rng.sample(LITERALS, rng.randint(0, 4)))
        return f"{rng.choice(NUMERIC + BOOLS)} in [{members}]"
    if pick == 8:
        members = ", ".join(f'"{d}"' for d in rng.sample(DOMAINS, rng.randint(1, 3)))
        return f"email_domain {rng.choice(['in', 'not in'])} [{members}]"
    if pick == 9:
        return f'"{rng.choice(["mail", "qq", ".com", ""])}" in email_domain'
    if pick == 10:
        return f'email_domain {op} "{rng.choice(DOMAINS)}"'
    if pick == 11:  # arithmetic: left to rule-engine
        return f"{rng.choice(NUMERIC)} * {rng.choice(['2', '0.5'])} {op} {rng.choice(LITERALS)}"
    if pick == 12:
        return f"({atom(rng)} ? {rng.choice(NUMERIC)} : {rng.choice(LITERALS)}) {op} {rng.choice(LITERALS)}"
    return rng.choice(NUMERIC)  # a number's truth


def expression(rng: random.Random, depth: int = 0) -> str:
    if depth >= 3 or rng.random() < 0.35:
        return atom(rng)
    pick = rng.randrange(3)
    if pick == 0:
        return f"not ({expression(rng, depth + 1)})"
    joiner = " and " if pick == 1 else " or "
    return "(" + joiner.join(expression(rng, depth + 1) for _ in range(rng.randint(2, 3))) + ")"


def vector(rng: random.Random) -> dict[str, object]:
    near = [0, 1, 2, 3, 4, 5, 9, 10, 11, 1000, -1, 7, 2**40]
    values: dict[str, object] = {}
    for name, kind in FEATURE_TYPES.items():
        if kind is int:
            values[name] = rng.choice(near)
        elif kind is float:
            values[name] = rng.choice([0.0, 0.1, 0.3, 0.1 + 0.2, 0.5, 1.0, 2.5, 7.25, 0.3333, 10.0, 1000.0])
        elif kind is bool:
            values[name] = rng.random() < 0.5
        else:
            values[name] = rng.choice(DOMAINS)
    return values


def test_random_rules_answer_as_rule_engine_does():
    rng = random.Random(20261206)
    vectors = [vector(rng) for _ in range(40)]
    assert all(well_typed(v) for v in vectors)
    parsed = compiled = hits = 0
    for _ in range(1500):
        text = expression(rng)
        try:
            rule = rule_compile(text)
        except RuleInvalid:
            continue
        parsed += 1
        test = rule_test(rule)
        if test is None:
            continue
        compiled += 1
        for values in vectors:
            answer = test(values)
            assert answer == reference(rule, values), (text, values)
            hits += answer
    # Not vacuous: most generated rules parse and are compiled (arithmetic and the inexact literal are not), and
    # they match as often as not.
    assert parsed > 1000
    assert compiled > 0.6 * parsed
    assert 0.2 < hits / (compiled * len(vectors)) < 0.8


def test_the_default_rules_are_all_compiled():
    rules = compiled_for(-1, DEFAULT_RULES)
    assert all(rule.test is not None for rule in rules)


@pytest.mark.parametrize(
    "text",
    [
        "amount_minor * 2 > 100",  # arithmetic
        "amount_minor > 0.30000000000000001",  # a literal with no exact float
        "[ip_orders_1h, 2] == [1, 2]",  # arrays compared
    ],
)
def test_what_is_not_reproduced_exactly_stays_with_rule_engine(text):
    rule = rule_compile(text)
    assert rule_test(rule) is None
    rules = compiled_for(-2, (("r", text, "review", "r", 1),))
    values = vector(random.Random(1)) | {"amount_minor": 1000, "ip_orders_1h": 1}
    assert [r.name for r in rules_matching(rules, values)] == (["r"] if reference(rule, values) else [])


def test_a_vector_of_the_wrong_types_is_left_to_rule_engine():
    values = vector(random.Random(2)) | {"ip_orders_1m": True}  # a bool where a count belongs
    assert not well_typed(values)
    rules = compiled_for(-3, (("burst", "ip_orders_1m >= 1", "block", "ip_burst", 1),))
    # rule-engine refuses a bool for a number (no match); a closure would have read True as 1.
    assert rules[0].test(values) is True
    assert rules_matching(rules, values) == []
    missing = {k: v for k, v in values.items() if k != "ip_orders_1m"}
    assert not well_typed(missing)
    assert rules_matching(rules, missing) == []
