"""Rules as Python closures: rule-engine parses, type-checks and reduces an operator's expression, and this turns the
tree it built into nested functions over the feature dict (no source text, no eval: each node becomes a closure
over its children). Walking rule-engine's tree costs ~11 µs per rule here, mostly its per-symbol coercion to
Decimal and type checks; the closures take under 1 µs (bench/risk.py prints the full assessment).

Only the node kinds whose meaning is reproduced exactly are compiled: feature names, literals, `and` / `or` /
`not`, comparisons, `in` and the ternary. A rule with anything else (arithmetic, attribute or item access, ...)
gets no closure and keeps rule-engine's own evaluation, which stays the reference either way:
tests/risk/test_rule_compiler.py checks both agree on random rules and feature values.

Why plain Python comparison is exact here: rule-engine compares numbers as Decimals (an int exactly, a float by its
repr). For values below 2**53 and a literal whose float is its own shortest repr, Python's int/float comparison
orders every pair the same way (repr is monotonic; an integer between a float and its repr would itself be that
float). Literals that do not round-trip, NaN, and vectors with a value of the wrong type are left to rule-engine.
"""

from __future__ import annotations

import decimal
import operator
from collections.abc import Callable, Mapping
from typing import Any

import rule_engine
from rule_engine import ast
from rule_engine.types import DataType

from risk.schema import FEATURE_TYPES

Test = Callable[[Mapping[str, Any]], Any]
# Integers and floats up to this compare exactly as rule-engine's Decimals do (module docstring).
EXACT_BELOW = 2**53

_ORDERED = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}
_SCALARS = (DataType.FLOAT, DataType.STRING, DataType.BOOLEAN)


class NotCompiled(Exception):
    """The node is outside the exactly reproduced subset: the rule keeps rule-engine's evaluation."""


def rule_test(rule: rule_engine.Rule) -> Callable[[Mapping[str, Any]], bool] | None:
    """The rule as a function of a well-typed feature dict (`well_typed`), or None where it cannot be exact."""
    try:
        node = _compile(rule.statement.expression)
    except NotCompiled:
        return None
    return lambda features: bool(node(features))


def well_typed(features: Mapping[str, Any]) -> bool:
    """Every schema feature present with its type (numbers finite, below EXACT_BELOW): the closures' condition."""
    for name, kind in FEATURE_TYPES.items():
        value = features.get(name)
        if kind is bool or kind is str:
            if type(value) is not kind:
                return False
        elif type(value) not in (int, float) or not (-EXACT_BELOW < value < EXACT_BELOW):
            return False  # also refuses NaN (its comparisons are all false)
    return True


def _compile(node) -> Test:
    kind = type(node)
    if kind is ast.SymbolExpression:
        if node.scope is not None or node.name not in FEATURE_TYPES:
            raise NotCompiled(node.name)
        return operator.itemgetter(node.name)
    if isinstance(node, ast.LiteralExpressionBase):
        value = _literal(node)
        return lambda features: value
    if kind is ast.LogicExpression:
        left, right = _compile(node.left), _compile(node.right)
        if node.type == "and":
            return lambda features: bool(left(features) and right(features))
        return lambda features: bool(left(features) or right(features))
    if kind is ast.ComparisonExpression:
        return _equality(node)
    if kind is ast.ArithmeticComparisonExpression:
        return _ordering(node)
    if kind is ast.ContainsExpression:
        return _contains(node)
    if kind is ast.UnaryExpression and node.type == "not":
        right = _compile(node.right)
        return lambda features: not right(features)
    if kind is ast.TernaryExpression:
        condition, yes, no = _compile(node.condition), _compile(node.case_true), _compile(node.case_false)
        return lambda features: yes(features) if condition(features) else no(features)
    raise NotCompiled(kind.__name__)


def _literal(node) -> Any:
    kind = type(node)
    if kind is ast.FloatExpression:
        return _number(node.value)
    if kind in (ast.BooleanExpression, ast.StringExpression, ast.NullExpression):
        return node.value
    if kind in (ast.ArrayExpression, ast.SetExpression):
        if any(type(m) in (ast.ArrayExpression, ast.SetExpression) for m in node.value):
            raise NotCompiled("a nested collection")
        # Used by `in` and for truth only: equal numbers hash alike, so a set answers as rule-engine's tuple does.
        return frozenset(_literal(m) for m in node.value)
    raise NotCompiled(kind.__name__)


def _number(value: decimal.Decimal) -> float:
    if not value.is_finite():
        raise NotCompiled(str(value))
    number = float(value)
    if decimal.Decimal(repr(number)) != value or not -EXACT_BELOW < number < EXACT_BELOW:
        raise NotCompiled(str(value))
    return number


def _operand_type(node):
    kind = node.result_type
    if kind not in _SCALARS and kind is not DataType.NULL:
        raise NotCompiled(f"operand of type {kind!r}")
    return kind


def _equality(node) -> Test:
    if node.type not in ("eq", "ne"):
        raise NotCompiled(node.type)
    left, right = _compile(node.left), _compile(node.right)
    if _operand_type(node.left) is not _operand_type(node.right):
        # rule-engine: values of different types are never equal (a bool is not the number 1).
        constant = node.type == "ne"
        return lambda features: (left(features), right(features)) and constant
    op = operator.eq if node.type == "eq" else operator.ne
    return _binary(op, node, left, right)


def _ordering(node) -> Test:
    kinds = _operand_type(node.left), _operand_type(node.right)
    if kinds[0] is not kinds[1] or kinds[0] is DataType.NULL:
        raise NotCompiled("ordered comparison of mixed or null operands")
    return _binary(_ORDERED[node.type], node, _compile(node.left), _compile(node.right))


def _binary(op, node, left: Test, right: Test) -> Test:
    # A literal operand is read once here rather than called per evaluation: most rules compare a feature to one.
    if isinstance(node.right, ast.LiteralExpressionBase):
        value = _literal(node.right)
        return lambda features: op(left(features), value)
    if isinstance(node.left, ast.LiteralExpressionBase):
        value = _literal(node.left)
        return lambda features: op(value, right(features))
    return lambda features: op(left(features), right(features))


def _contains(node) -> Test:
    container_type = node.container.result_type
    member = _compile(node.member)
    if type(node.container) in (ast.ArrayExpression, ast.SetExpression):
        values = _literal(node.container)
        return lambda features: member(features) in values
    if container_type is DataType.STRING and node.member.result_type is DataType.STRING:
        container = _compile(node.container)
        return lambda features: member(features) in container(features)
    raise NotCompiled(f"containment in {container_type!r}")
