"""Operators' rules: expressions over the features in rule-engine's language, parsed once, never Python's eval.

rule-engine parses into its own AST and evaluates against a plain dict: no attribute of a Python object is
reachable (`email_domain.__class__` is refused when the rule is saved), every name must be a feature of
risk.schema with its type (a typo is refused at once, not at 3 a.m.), and the regular-expression operators are
refused too (a pattern like `(a+)+$` could stall a checkout). Compiled rules are cached per rule set version, and
each also gets a closure (risk.rule_compiler) that answers as rule-engine would, many times faster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import rule_engine

from risk.rule_compiler import rule_test, well_typed
from risk.schema import FEATURE_TYPES

log = logging.getLogger(__name__)

_TYPES = {int: rule_engine.DataType.FLOAT, float: rule_engine.DataType.FLOAT, bool: rule_engine.DataType.BOOLEAN}
_CONTEXT = rule_engine.Context(
    type_resolver=rule_engine.type_resolver_from_dict(
        {name: _TYPES.get(kind, rule_engine.DataType.STRING) for name, kind in FEATURE_TYPES.items()}
    )
)
# Regular expressions can backtrack for seconds on a crafted input; lists and comparisons cover what rules need.
_REFUSED_OPERATORS = ("=~", "!~")
MAX_LENGTH = 2000


class RuleInvalid(ValueError):
    """A rule that cannot be saved: `message` says why in words an operator can act on."""


def rule_compile(expression: str) -> rule_engine.Rule:
    """The parsed rule, or RuleInvalid (syntax, an unknown feature, a type mismatch, a refused operator)."""
    text = (expression or "").strip()
    if not text:
        raise RuleInvalid("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise RuleInvalid(f"the expression is longer than {MAX_LENGTH} characters")
    if any(op in text for op in _REFUSED_OPERATORS):
        raise RuleInvalid("regular expressions (=~, !~) are not allowed: compare, or use a list with `in`")
    try:
        return rule_engine.Rule(text, context=_CONTEXT)
    except rule_engine.errors.SymbolResolutionError as exc:
        raise RuleInvalid(f"unknown feature {exc.symbol_name!r}") from exc
    except rule_engine.errors.AttributeResolutionError as exc:
        raise RuleInvalid(f"no attribute {exc.attribute_name!r} may be used") from exc
    except rule_engine.errors.EngineError as exc:
        raise RuleInvalid(f"{type(exc).__name__}: {exc.message}") from exc


@dataclass(frozen=True)
class CompiledRule:
    name: str
    action: str
    reason_code: str
    priority: int
    rule: rule_engine.Rule
    test: Callable[[dict[str, object]], bool] | None  # None: rule-engine evaluates this one itself


@lru_cache(maxsize=8)
def compiled_for(version: int, definitions: tuple[tuple[str, str, str, str, int], ...]) -> tuple[CompiledRule, ...]:
    """A version's enabled rules, parsed once per process (a published version never changes)."""
    compiled = []
    for name, text, action, reason, priority in definitions:
        rule = rule_compile(text)
        compiled.append(
            CompiledRule(
                name=name, action=action, reason_code=reason, priority=priority, rule=rule, test=rule_test(rule)
            )
        )
    return tuple(compiled)


def rules_matching(rules: tuple[CompiledRule, ...], features: dict[str, object]) -> list[CompiledRule]:
    """The rules whose expression holds for `features`, in priority order. A rule that fails to evaluate on
    these values (it was valid when saved) is skipped, never raised into a checkout. A vector that is not
    well-typed (an old stored assessment missing a feature, say) is evaluated by rule-engine alone."""
    fast = well_typed(features)
    matched = []
    for compiled in rules:
        if fast and compiled.test is not None:
            try:
                hit = compiled.test(features)
            except Exception:  # a compiler fault must not decide: rule-engine answers instead
                log.exception("compiled rule %r failed; rule-engine evaluates it", compiled.name)
                hit = _reference(compiled, features)
        else:
            hit = _reference(compiled, features)
        if hit:
            matched.append(compiled)
    return matched


def _reference(compiled: CompiledRule, features: dict[str, object]) -> bool:
    try:
        return compiled.rule.matches(features)
    except rule_engine.errors.EngineError:
        return False
