"""The hold-out replayed through the whole engine: the rules (the live version, or the default rules a new shop
starts with) and the model's score, combined exactly as a checkout's (risk.services.combine). Prints what share
of the fraudulent checkouts it stops (challenged, reviewed or blocked) and of the good ones it touches."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from risk.contracts import Decision
from risk.defaults import DEFAULT_RULES
from risk.models import Rule, RuleSetVersion, VersionState
from risk.rules import compiled_for, rules_matching
from risk.schema import FEATURE_NAMES
from risk.services import combine, risk_settings


@dataclass(frozen=True)
class Replay:
    rules_from: str  # "v<n>" or "defaults"
    fraud: int
    good: int
    fraud_stopped: float
    good_touched: float
    by_decision: dict[str, int]

    @property
    def targets_met(self) -> bool:
        return self.fraud_stopped >= 0.90 and self.good_touched <= 0.01


def _rules() -> tuple[str, tuple]:
    live = RuleSetVersion.objects.filter(state=VersionState.LIVE).first()
    if live is None:
        return "defaults", compiled_for(0, tuple((n, e, a, r, p) for n, e, a, r, p in DEFAULT_RULES))
    definitions = tuple(
        Rule.objects.filter(version=live, enabled=True)
        .order_by("priority", "pk")
        .values_list("name", "expression", "action", "reason_code", "priority")
    )
    return f"v{live.number}", compiled_for(live.number, definitions)


def holdout_replay(path: Path, score_of) -> Replay:
    """`score_of(features) -> float | None` is the model's score (the model being installed, or the live one)."""
    source, rules = _rules()
    cfg = risk_settings()
    counts: Counter = Counter()
    decisions: Counter = Counter()
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            values = {name: row[name] for name in FEATURE_NAMES}
            decision, _ = combine(rules_matching(rules, values), score_of(values), cfg)
            decisions[decision.value] += 1
            kind = "fraud" if row["label"] else "good"
            counts[kind] += 1
            counts[f"{kind}_stopped"] += decision != Decision.ALLOW
    return Replay(
        rules_from=source,
        fraud=counts["fraud"],
        good=counts["good"],
        fraud_stopped=counts["fraud_stopped"] / max(counts["fraud"], 1),
        good_touched=counts["good_stopped"] / max(counts["good"], 1),
        by_decision=dict(decisions),
    )
