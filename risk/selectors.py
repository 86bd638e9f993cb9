"""Risk's reads for the back office's order pages and dashboard: the assessments of orders, and decisions counted
per hour. Contracts out (risk.contracts), never rows. Must not import cardshop, payments or settlement."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, tzinfo

from django.db.models import Count
from django.db.models.functions import TruncHour
from django.utils.translation import gettext as _

from core.admin_display import money_label
from risk.contracts import AssessmentView, Decision, DecisionCount
from risk.models import Assessment
from risk.schema import MONEY_FEATURES

_VIEW_FIELDS = (
    "pk",
    "stage",
    "order_no",
    "decision",
    "reasons",
    "score",
    "ruleset_version",
    "model_version",
    "degraded",
    "created_at",
)


def feature_rows(features: dict[str, object], currency: str) -> tuple[tuple[str, str], ...]:
    """Every feature by name with its value as an operator reads it: amounts in major units with their currency,
    yes / no for flags."""
    rows = []
    for name, value in sorted(features.items()):
        if name in MONEY_FEATURES and isinstance(value, int):
            shown = money_label(value, currency)
        elif isinstance(value, bool):
            shown = _("yes") if value else _("no")
        else:
            shown = str(value)
        rows.append((name, shown))
    return tuple(rows)


def _view(a: Assessment, *, with_features: bool) -> AssessmentView:
    return AssessmentView(
        assessment_id=a.pk,
        stage=a.stage,
        order_no=a.order_no,
        decision=Decision(a.decision),
        reasons=tuple(a.reasons or ()),
        score=a.score,
        ruleset_version=a.ruleset_version,
        model_version=a.model_version,
        degraded=a.degraded,
        created_at=a.created_at,
        features=feature_rows(a.features or {}, a.currency) if with_features else (),
    )


def assessments_latest_for_orders(*, order_nos: Iterable[str]) -> dict[str, AssessmentView]:
    """The latest assessment of each order that has one, by order number, without features: one query (an
    order has a few assessments at most, one per checkout or payment start)."""
    order_nos = [n for n in set(order_nos) if n]
    if not order_nos:
        return {}
    rows = Assessment.objects.filter(order_no__in=order_nos).order_by("created_at", "pk").only(*_VIEW_FIELDS)
    return {a.order_no: _view(a, with_features=False) for a in rows}  # a later row replaces an earlier one


def assessments_for_order(*, order_no: str) -> tuple[AssessmentView, ...]:
    """Every assessment of one order with its features, newest first."""
    if not order_no:
        return ()
    return tuple(_view(a, with_features=True) for a in Assessment.objects.filter(order_no=order_no))


def decisions_by_hour(*, since: datetime, until: datetime, tz: tzinfo) -> tuple[DecisionCount, ...]:
    """Assessments made from `since` to `until` (both inclusive) counted per hour of `tz` and decision: one
    grouped query. Hours and decisions without any are absent (the caller lays out the zeros)."""
    rows = (
        Assessment.objects.filter(created_at__gte=since, created_at__lte=until)
        .annotate(hour=TruncHour("created_at", tzinfo=tz))
        .order_by()  # the model's ordering would join the GROUP BY
        .values("hour", "decision")
        .annotate(n=Count("pk"))
        .order_by("hour", "decision")
    )
    return tuple(DecisionCount(hour=r["hour"], decision=Decision(r["decision"]), assessments=r["n"]) for r in rows)
