"""The admin's home page: the figures of cardshop/dashboard.py turned into what the template and the theme's
charts (unfold's Chart.js components, fed a JSON `data` attribute) need. No figure is computed here."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest
from django.utils.translation import gettext as _

from cardshop.dashboard import Dashboard, dashboard_figures

# Fixed colours: a canvas cannot read the theme's CSS variables. Teal is the theme's primary.
ORDERS_CREATED = "#99f6e4"
ORDERS_PAID = "#0d9488"
REVENUE = ["#0f766e", "#f59e0b", "#6366f1", "#ec4899"]


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


LEGEND = _json({"plugins": {"legend": {"display": True}}, "maxBarThickness": 14, "grouped": True})


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    """The dashboard for operators who may see orders; others get the plain list of what they may open."""
    if not request.user.has_perm("cardshop.view_order"):
        return {}
    figures: Dashboard = dashboard_figures()
    charts = figures.chart_data()
    return {
        "figures": figures,
        "chart_options": LEGEND,
        "hourly_orders_chart": _orders_chart(charts["hourly"]),
        "hourly_revenue_chart": _revenue_chart(charts["hourly"]),
        "daily_orders_chart": _orders_chart(charts["daily"]),
        "daily_revenue_chart": _revenue_chart(charts["daily"]),
        "methods_chart": _methods_chart(charts["methods"]),
        "channels_chart": _channels_chart(charts["channels"]),
    }
