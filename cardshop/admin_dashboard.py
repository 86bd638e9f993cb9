"""The admin's home page: the figures of cardshop/dashboard.py turned into what the template and the theme's
charts (unfold's Chart.js components, fed a JSON `data` attribute) need. No figure is computed here."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest
from django.utils.translation import gettext as _

from cardshop.dashboard import Dashboard, DecisionSeries, dashboard_figures, risk_decisions_figures
from risk.contracts import Decision

# Fixed colours: a canvas cannot read the theme's CSS variables. Teal is the theme's primary.
ORDERS_CREATED = "#99f6e4"
ORDERS_PAID = "#0d9488"
REVENUE = ["#0f766e", "#f59e0b", "#6366f1", "#ec4899"]
# One colour per risk decision, as the decision badges of the order pages (cardshop-orders.css).
DECISIONS = {
    Decision.ALLOW: "#0d9488",
    Decision.CHALLENGE: "#d97706",
    Decision.REVIEW: "#6366f1",
    Decision.BLOCK: "#dc2626",
}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _orders_chart(series: dict) -> str:
    return _json(
        {
            "labels": series["labels"],
            "datasets": [
                {**series["orders"][0], "backgroundColor": ORDERS_CREATED, "displayYAxis": True},
                {**series["orders"][1], "backgroundColor": ORDERS_PAID},
            ],
        }
    )


def _revenue_chart(series: dict) -> str:
    return _json(
        {
            "labels": series["labels"],
            "datasets": [
                {
                    "label": r["label"],
                    "data": r["data"],
                    "borderColor": REVENUE[i % len(REVENUE)],
                    "backgroundColor": REVENUE[i % len(REVENUE)],
                    "displayYAxis": True,
                }
                for i, r in enumerate(series["revenue"])
            ],
        }
    )


def _methods_chart(methods: dict) -> str:
    return _json(
        {
            "labels": methods["labels"],
            "datasets": [
                {
                    "label": _("Payments"),
                    "data": methods["payments"],
                    "backgroundColor": ORDERS_PAID,
                    "displayYAxis": True,
                }
            ],
        }
    )


def _channels_chart(channels: dict) -> str:
    return _json(
        {
            "labels": channels["labels"],
            "datasets": [
                {
                    "label": _("Success rate, last 24 hours (%)"),
                    "data": channels["success_rate_24h"],
                    "backgroundColor": ORDERS_PAID,
                    "displayYAxis": True,
                    "suffixYAxis": "%",
                },
                {
                    "label": _("Success rate, last 7 days (%)"),
                    "data": channels["success_rate_7d"],
                    "backgroundColor": ORDERS_CREATED,
                },
            ],
        }
    )


def _decisions_chart(series: DecisionSeries) -> str:
    chart = series.chart()
    return _json(
        {
            "labels": chart["labels"],
            "datasets": [
                {
                    "label": d["label"],
                    "data": d["data"],
                    "backgroundColor": DECISIONS[Decision(d["decision"])],
                    **({"displayYAxis": True} if i == 0 else {}),
                }
                for i, d in enumerate(chart["datasets"])
            ],
        }
    )


LEGEND = _json({"plugins": {"legend": {"display": True}}, "maxBarThickness": 14, "grouped": True})
STACKED = _json(
    {
        "plugins": {"legend": {"display": True}},
        "maxBarThickness": 14,
        "scales": {"x": {"stacked": True}, "y": {"stacked": True, "beginAtZero": True, "ticks": {"precision": 0}}},
    }
)


def _risk_context(request: HttpRequest) -> dict[str, Any]:
    """Risk's decisions per hour, for operators who may read assessments."""
    if not request.user.has_perm("risk.view_assessment"):
        return {}
    series = risk_decisions_figures()
    return {
        "risk_decisions": series,
        "risk_decisions_chart": _decisions_chart(series),
        "risk_totals": [(label, n, DECISIONS[d]) for d, label, n in series.totals],
        "risk_chart_options": STACKED,
    }


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    """The dashboard for operators who may see orders (risk's chart for those who may read assessments); others
    get the plain list of what they may open."""
    context = _risk_context(request)
    if not request.user.has_perm("cardshop.view_order"):
        return context
    figures: Dashboard = dashboard_figures()
    charts = figures.chart_data()
    return {
        **context,
        "figures": figures,
        "chart_options": LEGEND,
        "hourly_orders_chart": _orders_chart(charts["hourly"]),
        "hourly_revenue_chart": _revenue_chart(charts["hourly"]),
        "daily_orders_chart": _orders_chart(charts["daily"]),
        "daily_revenue_chart": _revenue_chart(charts["daily"]),
        "methods_chart": _methods_chart(charts["methods"]),
        "channels_chart": _channels_chart(charts["channels"]),
    }
