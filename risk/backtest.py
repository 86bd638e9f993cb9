"""Backtesting a draft: what its rules would have done to the last orders, before it may be published.

The rows are recent assessments with the features they saw, and what really became of each order. Risk knows no
orders: settings.RISK_ORDER_OUTCOMES names the function of the layer above that tells them
(cardshop.services.risk_outcomes.order_outcomes), so the dependency points up only through a setting, as
AUTH_USER_MODEL does. A row counts as hit when the draft would not simply allow it. The result, split by real outcome (paid, refunded, expired, blocked, open), is stored on
the draft with a digest of its rules: publishing refuses a draft whose rules changed since (risk.versions).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from core.errors import DomainError
from risk.contracts import Decision
from risk.models import Assessment, RuleSetVersion, Stage, VersionState
from risk.rules import compiled_for, rules_matching
from risk.services import combine, risk_settings

OUTCOMES = ("paid", "refunded", "expired", "blocked", "open")


@dataclass(frozen=True)
class BacktestRow:
    order_no: str
    features: dict
    outcome: str  # one of OUTCOMES
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class RecentAssessment:
    order_no: str
    decision: str
    features: dict
    currency: str


def assessments_recent(*, limit: int) -> list[RecentAssessment]:
    """The last `limit` checkout assessments that named an order number (a block's number made no order)."""
    rows = (
        Assessment.objects.filter(stage=Stage.CHECKOUT)
        .exclude(order_no="")
        .order_by("-pk")
        .values_list("order_no", "decision", "features", "currency")[:limit]
    )
    return [RecentAssessment(*row) for row in rows]


def rules_digest(version: RuleSetVersion) -> str:
    rules = version.rules.order_by("pk").values_list(
        "name", "expression", "action", "reason_code", "priority", "enabled"
    )
    return hashlib.sha256(json.dumps(sorted(map(list, rules))).encode()).hexdigest()


def _definitions(version: RuleSetVersion) -> tuple:
    return tuple(
        version.rules.filter(enabled=True)
        .order_by("priority", "pk")
        .values_list("name", "expression", "action", "reason_code", "priority")
    )


def ruleset_backtest(*, number: int, rows: Iterable[BacktestRow]) -> dict:
    """Run the draft's rules over `rows` and store the summary on it (module docstring)."""
    version = RuleSetVersion.objects.filter(number=number).first()
    if version is None or version.state != VersionState.DRAFT:
        raise DomainError("not_draft", "only the draft is backtested")
    rules = compiled_for(version.number, _definitions(version))  # cached by the rules' text too
    cfg = risk_settings()
    by_outcome = {o: {"orders": 0, "hit": 0, "hit_amount": {}} for o in OUTCOMES}
    decisions = {d.value: 0 for d in Decision}
    total = 0
    for row in rows:
        total += 1
        decision, _ = combine(rules_matching(rules, row.features), None, cfg)
        decisions[decision.value] += 1
        bucket = by_outcome[row.outcome if row.outcome in by_outcome else "open"]
        bucket["orders"] += 1
        if decision != Decision.ALLOW:
            bucket["hit"] += 1
            bucket["hit_amount"][row.currency] = bucket["hit_amount"].get(row.currency, 0) + row.amount_minor
    result = {
        "orders": total,
        "hit": sum(b["hit"] for b in by_outcome.values()),
        "by_outcome": by_outcome,
        "by_decision": decisions,
        "rules_digest": rules_digest(version),
        "at": timezone.now().isoformat(),
    }
    version.backtest = result
    version.save(update_fields=["backtest"])
    return result


def draft_backtest(*, number: int, limit: int = 1000) -> dict:
    """Backtest the draft over the last `limit` checkout assessments and what became of their orders."""
    recent = assessments_recent(limit=limit)
    outcomes = import_string(settings.RISK_ORDER_OUTCOMES)([r.order_no for r in recent])
    rows = [
        BacktestRow(
            order_no=r.order_no,
            features=r.features,
            outcome="blocked" if r.decision == Decision.BLOCK else outcomes.get(r.order_no, "open"),
            amount_minor=int(r.features.get("amount_minor", 0)),
            currency=r.currency,
        )
        for r in recent
    ]
    return ruleset_backtest(number=number, rows=rows)
