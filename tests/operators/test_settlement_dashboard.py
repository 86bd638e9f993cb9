"""The settlement dashboard: what the ledger booked per shop day and currency (settlement.dashboard), and its admin
page at /admin/settlement/dashboard/ with the charts fed to the theme's Chart.js and the last ledger check."""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from django.db import transaction
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.urls import reverse

from core.parties import agent_create
from settlement import facade
from settlement.admin_dashboard import settlement_dashboard_context
from settlement.dashboard import CheckRun, settlement_figures
from settlement.ledger import Line, ledger_post
from settlement.models import LedgerEntry, LedgerTransaction
from tests.factories.core import MerchantFactory
from tests.factories.settlement import FeePlanFactory
from tests.operators.auth import operator_login, staff_user

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)  # 14:00 on 2 December in Shanghai
DAYS = (date(2026, 11, 30), date(2026, 12, 1), date(2026, 12, 2))


def sale(time_machine, at, merchant, *, no, gross, fee, currency="CNY"):
    time_machine.move_to(at, tick=False)
    with transaction.atomic():
        return facade.sale_post(
            out_trade_no=f"P{no}",
            order_no=f"O{no}",
            merchant_id=merchant.pk,
            gross_minor=gross,
            currency=currency,
            channel_account_id=77,
            channel_fee_minor=fee,
        )


def refund(time_machine, at, view):
    """A whole refund of a sale still pending whose channel returns its fee: every line of the sale reversed
    (what the refund posting books in that case)."""
    time_machine.move_to(at, tick=False)
    txn = LedgerTransaction.objects.get(pk=view.transaction_id)
    lines = [
        Line(account_id=e.account_id, amount_minor=-e.amount_minor, currency=e.currency) for e in txn.entries.all()
    ]
    with transaction.atomic():
        ledger_post(key=f"refund:R-{view.reference}", kind="refund", reference=view.reference, lines=lines)


@pytest.fixture
def ledger(time_machine):
    """The worked-example plan (500 bp + 0.10, agents 200 / 100 bp, reserve 1000 bp) in CNY and USD.

    9.99 CNY (fee 0.06) books: fee 6, merchant 839, reserve 100, agents 20 + 10, platform 30.
    20.00 CNY (fee 0.12) books: fee 12, merchant 1690, reserve 200, agents 40 + 20, platform 50.
    10.00 USD (fee 0.30) books: fee 30, merchant 840, reserve 100, agents 20 + 10, platform 30.
    """
    top = agent_create(name="Regional")
    agent = agent_create(name="City", parent_id=top.pk)
    merchant = MerchantFactory(agent=agent)
    FeePlanFactory(merchant=merchant)
    FeePlanFactory(merchant=merchant, currency="USD")
    # 23:59 on 29 November in Shanghai: the day before the window.
    sale(time_machine, datetime(2026, 11, 29, 15, 59, tzinfo=UTC), merchant, no=0, gross=999, fee=6)
    # 18:00 on 30 November.
    first = sale(time_machine, datetime(2026, 11, 30, 10, 0, tzinfo=UTC), merchant, no=1, gross=999, fee=6)
    # 16:30 UTC on 30 November is 00:30 on 1 December in Shanghai.
    sale(time_machine, datetime(2026, 11, 30, 16, 30, tzinfo=UTC), merchant, no=2, gross=2000, fee=12)
    # 23:59 on 1 December.
    sale(time_machine, datetime(2026, 12, 1, 15, 59, tzinfo=UTC), merchant, no=3, gross=999, fee=6)
    # 09:00 on 2 December: the first sale refunded, and a USD sale.
    refund(time_machine, datetime(2026, 12, 2, 1, 0, tzinfo=UTC), first)
    sale(time_machine, datetime(2026, 12, 2, 2, 0, tzinfo=UTC), merchant, no=4, gross=1000, fee=30, currency="USD")
    # A release moves a merchant's money between its own accounts: never a figure.
    release_at = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    time_machine.move_to(release_at, tick=False)
    pending = LedgerEntry.objects.get(transaction__reference="O3", account__kind="merchant_pending")
    available = facade_available_account(merchant)
    with transaction.atomic():
        ledger_post(
            key="release:O3",
            kind="release",
            reference="O3",
            lines=[
                Line(account_id=pending.account_id, amount_minor=839, currency="CNY"),
                Line(account_id=available.pk, amount_minor=-839, currency="CNY"),
            ],
        )
    time_machine.move_to(NOW, tick=False)
    return merchant


def facade_available_account(merchant):
    from settlement.ledger import ledger_account

    return ledger_account(party_kind="merchant", party_id=merchant.pk, kind="merchant_available", currency="CNY")


def daily(series, name):
    return [day.minor(name) for day in series.days]


def test_every_daily_figure_and_total_in_shop_days(ledger, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):  # the grouped entries and the last check run
        figures = settlement_figures(now=NOW, days=3)

    assert figures.dates == DAYS
    assert figures.labels == ("2026-11-30", "2026-12-01", "2026-12-02")
    cny, usd = figures.currencies
    assert (cny.currency, usd.currency) == ("CNY", "USD")
    # 30 Nov: sale 1. 1 Dec: sales 2 (00:30 shop time) and 3. 2 Dec: sale 1 refunded.
    assert daily(cny, "gross_sales") == [999, 2999, 0]
    assert daily(cny, "refunded") == [0, 0, 999]
    assert daily(cny, "gross") == [999, 2999, -999]
    assert daily(cny, "channel_fees") == [6, 18, -6]
    assert daily(cny, "platform_revenue") == [30, 80, -30]
    assert daily(cny, "agent_commissions") == [30, 90, -30]
    assert daily(cny, "merchant_net") == [839, 2529, -839]
    assert daily(cny, "reserve") == [100, 300, -100]
    t = cny.total
    assert (t.gross_sales, t.refunded, t.gross) == (3998, 999, 2999)
    assert (t.channel_fees, t.platform_revenue, t.agent_commissions, t.merchant_net, t.reserve) == (
        18,
        80,
        90,
        2529,
        300,
    )
    # Every posting balances: each day's gross volume is what the parties got, net.
    for day in (*cny.days, t, *usd.days):
        assert day.gross == day.platform_revenue + day.agent_commissions + day.merchant_net + day.reserve
    assert daily(usd, "gross") == [0, 0, 1000]
    assert daily(usd, "merchant_net") == [0, 0, 840]
    u = usd.total
    assert (u.gross, u.channel_fees, u.platform_revenue, u.agent_commissions, u.reserve) == (1000, 30, 30, 30, 100)
    assert figures.last_check is None


def test_the_shop_day_boundary_is_midnight_in_shanghai(ledger):
    # As of 00:10 on 1 December shop time (16:10 UTC on 30 November), sale 2 at 00:30 is still to come.
    figures = settlement_figures(now=datetime(2026, 11, 30, 16, 10, tzinfo=UTC), days=2)
    (cny,) = figures.currencies
    assert figures.dates == (date(2026, 11, 30), date(2026, 12, 1))
    assert daily(cny, "gross") == [999, 0]
    # Ten minutes after it: on 1 December, not on 30 November as its UTC date says.
    figures = settlement_figures(now=datetime(2026, 11, 30, 16, 40, tzinfo=UTC), days=2)
    assert daily(figures.currencies[0], "gross") == [999, 2000]
    # The sale at 23:59 on 29 November is a day of its own.
    figures = settlement_figures(now=datetime(2026, 11, 30, 10, 0, tzinfo=UTC), days=2)
    assert daily(figures.currencies[0], "gross") == [999, 999]


def test_an_empty_ledger_has_no_currency_and_zero_filled_days(db):
    figures = settlement_figures(now=NOW, days=7)
    assert len(figures.dates) == 7 and figures.dates[-1] == date(2026, 12, 2)
    assert figures.currencies == ()
    assert figures.chart_data() == {"labels": [d.isoformat() for d in figures.dates], "currencies": []}


def test_chart_data_is_major_units_per_currency(ledger):
    charts = settlement_figures(now=NOW, days=3).chart_data()
    cny = charts["currencies"][0]
    assert cny["currency"] == "CNY"
    assert cny["gross"] == ["9.99", "29.99", "-9.99"]
    assert cny["merchant_net"] == ["8.39", "25.29", "-8.39"]
    assert cny["channel_fees"] == ["0.06", "0.18", "-0.06"]


def _chart(page: str, name: str) -> dict:
    canvas = re.search(rf'data-value="([^"]*)"[^>]*>\s*</canvas>\s*</div>\s*<!-- {name} -->', page)
    return json.loads(html.unescape(canvas.group(1)))


def test_the_page_shows_totals_charts_and_the_last_check(ledger):
    op = operator_login(Client(), staff_user("ledger", "settlement.view_ledgertransaction"))
    response = op.get(reverse("admin:settlement_dashboard"))
    assert response.status_code == 200
    page = response.content.decode()
    assert reverse("admin:settlement_dashboard") == "/admin/settlement/dashboard/"
    totals = re.search(r'id="settlement-totals-CNY">(.*?)</table>', page, re.S).group(1)
    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", totals)]
    rows = dict(zip(cells[::2], cells[1::2], strict=True))
    # The window is 30 days: sale 0 (29 November) is in it too.
    assert rows == {
        "Gross volume": "39.98 CNY",
        "Gross sales": "49.97 CNY",
        "Refunded": "9.99 CNY",
        "Channel fees": "0.24 CNY",
        "Platform revenue": "1.10 CNY",
        "Agent commissions": "1.20 CNY",
        "Merchant net": "33.68 CNY",
        "Reserve": "4.00 CNY",
    }
    usd = re.search(r'id="settlement-totals-USD">(.*?)</table>', page, re.S).group(1)
    assert "10.00 USD" in usd and "8.40 USD" in usd
    assert "No check has run yet." in re.search(r'id="settlement-last-check">(.*?)</div>', page, re.S).group(1)
    assert "minor units" not in page and "3998" not in page and "4997" not in page

    gross = _chart(page, "settlement-gross")
    assert len(gross["labels"]) == 30 and gross["labels"][-1] == "2026-12-02"
    assert [d["currency"] for d in gross["datasets"]] == ["CNY", "USD"]
    assert gross["datasets"][0]["data"][-4:] == ["9.99", "9.99", "29.99", "-9.99"]
    assert gross["datasets"][1]["data"][-1] == "10.00" and set(gross["datasets"][1]["data"][:-1]) == {"0.00"}
    split = _chart(page, "settlement-split-CNY")
    assert [d["figure"] for d in split["datasets"]] == [
        "channel_fees",
        "platform_revenue",
        "agent_commissions",
        "merchant_net",
    ]
    assert [d["label"] for d in split["datasets"]] == [
        "Channel fees",
        "Platform revenue",
        "Agent commissions",
        "Merchant net (right axis)",
    ]
    assert [d["yAxisID"] for d in split["datasets"]] == ["y", "y", "y", "merchant"]
    assert split["datasets"][3]["data"][-3:] == ["8.39", "25.29", "-8.39"]
    assert split["datasets"][1]["data"][-3:] == ["0.30", "0.80", "-0.30"]


def test_an_empty_ledger_renders(db, time_machine):
    time_machine.move_to(NOW, tick=False)
    op = operator_login(Client(), staff_user("boss", superuser=True))
    page = op.get(reverse("admin:settlement_dashboard")).content.decode()
    assert 'id="settlement-totals-none"' in page
    assert _chart(page, "settlement-gross")["datasets"] == []


def test_staff_without_the_ledger_permission_get_403(ledger):
    clerk = operator_login(Client(), staff_user("clerk", "cardshop.view_order"))
    assert clerk.get(reverse("admin:settlement_dashboard")).status_code == 403


def test_anonymous_visitors_are_sent_to_the_login(db):
    response = Client().get(reverse("admin:settlement_dashboard"))
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize(
    ("ok", "problems", "shown"),
    [(True, 0, "ok"), (False, 1, "1 problem"), (False, 3, "3 problems")],
)
def test_the_last_check_card_says_ok_or_how_many_problems_and_when(ledger, ok, problems, shown):
    run = CheckRun(
        started_at=datetime(2026, 12, 1, 18, 30, tzinfo=UTC),  # 02:30 on 2 December in Shanghai
        finished_at=datetime(2026, 12, 1, 18, 31, tzinfo=UTC),
        ok=ok,
        problem_count=problems,
        pk=1,
    )
    figures = replace(settlement_figures(now=NOW, days=3), last_check=run)
    request = RequestFactory().get("/admin/settlement/dashboard/")
    request.user = staff_user("boss", superuser=True)
    page = render_to_string(
        "admin/settlement/dashboard.html", {**settlement_dashboard_context(figures), "days": 3}, request=request
    )
    card = re.search(r'id="settlement-last-check">(.*?)</div>', page, re.S).group(1)
    assert re.search(rf">\s*{shown}\s*<", card)
    assert "run at 2026-12-02 02:30" in card
    assert "No check has run yet." not in card
