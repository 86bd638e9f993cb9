"""Issue 13: risk's decisions per hour by outcome (cardshop.dashboard.risk_decisions_figures) and their stacked chart
on the admin's home page.

The shop runs on Asia/Shanghai (UTC+8). `NOW` is 2026-12-02 14:20 there (06:20 UTC): the 24 hours are 15:00
yesterday (07:00 UTC on Dec 1) to the current hour, 14:00, which is still running.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime

import pytest
from django.test import Client
from django.urls import reverse

from cardshop.dashboard import risk_decisions_figures
from risk.contracts import Decision
from tests.factories.risk import AssessmentFactory
from tests.operators.auth import operator_login, staff_user

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 2, 6, 20, tzinfo=UTC)


def utc(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def assessed():
    at = {
        "before the window": (utc(1, 6, 59, 59), "allow"),  # 14:59:59 yesterday
        "first hour": (utc(1, 7, 0), "challenge"),  # 15:00 yesterday
        "midnight allow": (utc(1, 16, 0), "allow"),  # 00:00 today
        "midnight allow 2": (utc(1, 16, 59, 59), "allow"),
        "midnight block": (utc(1, 16, 30), "block"),
        "13h review": (utc(2, 5, 10), "review"),  # 13:10
        "13h allow": (utc(2, 5, 59), "allow"),
        "current hour": (utc(2, 6, 5), "allow"),  # 14:05, the running hour
        "now": (NOW, "block"),  # the window ends at now, inclusive
        "after now": (utc(2, 6, 21), "review"),
    }
    for moment, decision in at.values():
        AssessmentFactory(decision=decision, created_at=moment, stage="payment" if decision == "block" else "checkout")


def test_decisions_are_counted_per_shop_hour_and_outcome_in_one_query(assessed, django_assert_num_queries):
    with django_assert_num_queries(1):
        series = risk_decisions_figures(now=NOW)
    assert len(series.labels) == 24 and series.labels[0] == "15:00" and series.labels[-1] == "14:00"
    assert series.labels[9] == "00:00" and series.starts[9] == datetime(2026, 12, 2, 0, 0, tzinfo=series.now.tzinfo)
    expected = {d: [0] * 24 for d in Decision}
    expected[Decision.CHALLENGE][0] = 1
    expected[Decision.ALLOW][9] = 2
    expected[Decision.BLOCK][9] = 1
    expected[Decision.REVIEW][22] = 1
    expected[Decision.ALLOW][22] = 1
    expected[Decision.ALLOW][23] = 1
    expected[Decision.BLOCK][23] = 1
    assert {d: list(c) for d, c in series.counts.items()} == expected
    assert all(series.counts[d][5] == 0 for d in Decision)  # 20:00 yesterday: nothing, zeros
    assert [(d, n) for d, _label, n in series.totals] == [
        (Decision.ALLOW, 4),
        (Decision.CHALLENGE, 1),
        (Decision.REVIEW, 1),
        (Decision.BLOCK, 2),
    ]


def test_no_assessment_is_24_zero_hours_per_outcome():
    with pytest.raises(ValueError):
        risk_decisions_figures(now=NOW.replace(tzinfo=None))
    series = risk_decisions_figures(now=NOW)
    assert series.counts == {d: (0,) * 24 for d in Decision}
    chart = series.chart()
    assert [d["decision"] for d in chart["datasets"]] == ["allow", "challenge", "review", "block"]


def test_a_daylight_saving_change_neither_repeats_nor_skips_an_hour(settings):
    """Europe/Berlin springs from 02:00 to 03:00 on 2026-03-29: the 24 buckets are 24 real hours."""
    settings.TIME_ZONE = "Europe/Berlin"
    now = datetime(2026, 3, 29, 10, 30, tzinfo=UTC)  # 12:30 CEST
    AssessmentFactory(decision="review", created_at=datetime(2026, 3, 29, 1, 30, tzinfo=UTC))  # 03:30 CEST
    AssessmentFactory(decision="allow", created_at=datetime(2026, 3, 29, 0, 30, tzinfo=UTC))  # 01:30 CET
    series = risk_decisions_figures(now=now)
    assert len(set(series.starts)) == 24 and "02:00" not in series.labels
    assert series.labels[0] == "12:00" and series.labels[-1] == "12:00"  # 12:00 CET yesterday to 12:00 CEST
    assert series.counts[Decision.REVIEW][series.labels.index("03:00")] == 1
    assert series.counts[Decision.ALLOW][series.labels.index("01:00")] == 1


def _chart(page: str, name: str) -> tuple[dict, dict]:
    canvas = re.search(
        rf'data-options="([^"]*)" data-type="bar" data-value="([^"]*)"[^>]*>\s*</canvas>\s*</div>\s*<!-- {name} -->',
        page,
    )
    return json.loads(html.unescape(canvas.group(2))), json.loads(html.unescape(canvas.group(1)))


def test_the_dashboard_draws_the_decisions_stacked_with_a_colour_per_outcome(assessed, time_machine):
    time_machine.move_to(NOW, tick=False)
    op = operator_login(Client(), staff_user("op", superuser=True))
    page = op.get(reverse("admin:index")).content.decode()
    data, options = _chart(page, "risk-decisions")
    assert options["scales"]["x"]["stacked"] and options["scales"]["y"]["stacked"]
    assert [(d["label"], d["backgroundColor"]) for d in data["datasets"]] == [
        ("allow", "#0d9488"),
        ("challenge", "#d97706"),
        ("review", "#6366f1"),
        ("block", "#dc2626"),
    ]
    assert (
        data["labels"][0] == "15:00" and data["datasets"][0]["data"][9] == 2 and sum(data["datasets"][3]["data"]) == 2
    )
    totals = re.search(r'id="dashboard-risk-totals">(.*?)</div>', page, re.S).group(1)
    assert re.search(r"allow <strong>4</strong>", totals) and re.search(r"block <strong>2</strong>", totals)
    assert reverse("admin:risk_assessment_changelist") in totals


def test_only_operators_who_may_read_assessments_get_the_chart(assessed, time_machine):
    time_machine.move_to(NOW, tick=False)
    orders_only = operator_login(Client(), staff_user("orders", "cardshop.view_order"))
    page = orders_only.get(reverse("admin:index")).content.decode()
    assert 'id="dashboard"' in page and "<!-- risk-decisions -->" not in page
    risk_only = operator_login(Client(), staff_user("risk", "risk.view_assessment"))
    page = risk_only.get(reverse("admin:index")).content.decode()
    assert "<!-- risk-decisions -->" in page and 'id="dashboard-kpis"' not in page  # no order figures for them


def test_the_dashboard_lists_the_orders_waiting_for_review_with_the_way_to_the_queue(time_machine):
    from cardshop.models import OrderState
    from tests.factories.cardshop import OrderFactory

    time_machine.move_to(NOW, tick=False)
    later = OrderFactory(state=OrderState.REVIEW, created_at=utc(2, 5, 0))
    earlier = OrderFactory(state=OrderState.REVIEW, created_at=utc(2, 2, 0))
    OrderFactory(state=OrderState.PENDING, created_at=utc(2, 1, 0))
    reviewer = operator_login(Client(), staff_user("reviewer", "cardshop.view_order", "cardshop.review_order"))
    listing = re.search(
        r'id="dashboard-review">(.*?)</table>\s*(.*?)</div>', reviewer.get("/admin/").content.decode(), re.S
    )
    assert re.findall(r"/admin/cardshop/order/(\d+)/change/", listing.group(1)) == [str(earlier.pk), str(later.pk)]
    assert "12-02 10:00" in listing.group(1)  # waiting since 02:00 UTC, shop time
    assert reverse("admin:cardshop_orderinreview_changelist") in listing.group(2)
    viewer = operator_login(Client(), staff_user("viewer", "cardshop.view_order"))
    page = viewer.get("/admin/").content.decode()
    assert earlier.order_no in page and reverse("admin:cardshop_orderinreview_changelist") not in page
