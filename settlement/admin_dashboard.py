"""The settlement dashboard page (/admin/settlement/dashboard/): the figures of settlement/dashboard.py turned into
what the template and the theme's charts (unfold's Chart.js components, fed a JSON `data` attribute) need.
No figure is computed here. Registered by cardshop/admin_site.py (CardShopAdminSite.get_urls)."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from settlement.dashboard import DEFAULT_DAYS, FIGURE_LABELS, CheckRun, SettlementDashboard, settlement_figures

PERMISSION = "settlement.view_ledgertransaction"

# Fixed colours: a canvas cannot read the theme's CSS variables. Teal is the theme's primary.
GROSS = ["#0f766e", "#f59e0b", "#6366f1", "#ec4899"]  # one per currency
SPLIT = {
    "channel_fees": "#ef4444",
    "platform_revenue": "#0d9488",
    "agent_commissions": "#6366f1",
    "merchant_net": "#f59e0b",
}

TITLE = gettext_lazy("Settlement dashboard")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _gross_chart(charts: dict) -> str:
    return _json(
        {
            "labels": charts["labels"],
            "datasets": [
                {
                    "label": _("Gross volume (%(currency)s)") % {"currency": c["currency"]},
                    "currency": c["currency"],
                    "data": c["gross"],
                    "borderColor": GROSS[i % len(GROSS)],
                    "backgroundColor": GROSS[i % len(GROSS)],
                    "displayYAxis": True,
                }
                for i, c in enumerate(charts["currencies"])
            ],
        }
    )


def _split_chart(labels: list[str], currency: dict) -> str:
    """One currency's channel fees, platform revenue, agent commissions and merchant net, one line each. The
    merchant's net is most of every sale: it has its own axis (right), so the fees stay readable on the left."""

    def label(name: str) -> str:
        if name == "merchant_net":
            return _("%(figure)s (right axis)") % {"figure": FIGURE_LABELS[name]}
        return str(FIGURE_LABELS[name])

    return _json(
        {
            "labels": labels,
            "datasets": [
                {
                    "label": label(name),
                    "figure": name,
                    "data": currency[name],
                    "borderColor": colour,
                    "backgroundColor": colour,
                    "yAxisID": MERCHANT_AXIS if name == "merchant_net" else "y",
                    "displayYAxis": True,
                }
                for name, colour in SPLIT.items()
            ],
        }
    )


MERCHANT_AXIS = "merchant"
LEGEND = _json({"plugins": {"legend": {"display": True}}})
SPLIT_OPTIONS = _json(
    {
        "plugins": {"legend": {"display": True}},
        "scales": {
            "y": {"position": "left"},
            MERCHANT_AXIS: {"position": "right", "grid": {"drawOnChartArea": False}},
        },
    }
)


def _check_url(run: CheckRun | None) -> str | None:
    """The run's admin page, when the check runs' admin is installed."""
    if run is None:
        return None
    try:
        return reverse("admin:settlement_ledgercheckrun_change", args=[run.pk])
    except NoReverseMatch:
        return None


def settlement_dashboard_context(figures: SettlementDashboard) -> dict[str, Any]:
    charts = figures.chart_data()
    return {
        "figures": figures,
        "last_check_url": _check_url(figures.last_check),
        "chart_options": LEGEND,
        "split_chart_options": SPLIT_OPTIONS,
        "gross_chart": _gross_chart(charts),
        "split_charts": [
            (series, _split_chart(charts["labels"], data))
            for series, data in zip(figures.currencies, charts["currencies"], strict=True)
        ],
    }


def settlement_dashboard_view(request: HttpRequest, *, site) -> HttpResponse:
    """Staff who may read the ledger (settlement.view_ledgertransaction); anyone else gets 403."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    figures = settlement_figures(days=DEFAULT_DAYS)
    context = {
        **site.each_context(request),
        "title": TITLE,
        "days": DEFAULT_DAYS,
        **settlement_dashboard_context(figures),
    }
    return TemplateResponse(request, "admin/settlement/dashboard.html", context)
