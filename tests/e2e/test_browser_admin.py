"""The back office in a real browser: the dashboard draws its charts, the order list keeps its columns on one
line at 1400 px, and the dashboard fits a 390 px phone; in both languages, screenshots saved as artifacts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from cardshop.models import DeliveryKind, OrderState
from tests.e2e.helpers import DESKTOP, PHONE, SCREEN_IDS, SCREENS, assert_no_horizontal_scroll, screen_name
from tests.factories.cardshop import OrderFactory, ProductFactory
from tests.factories.risk import AssessmentFactory

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "op-pass-123456"


@pytest.fixture
def shop(merchant):
    gift = ProductFactory(merchant=merchant, name="Steam Wallet 100", price_minor=9990, secrets_count=3)
    manual = ProductFactory(merchant=merchant, name="Game top-up", price_minor=5000, delivery_kind=DeliveryKind.MANUAL)
    now = timezone.now()
    for hours in (1, 3, 26, 50):
        at = now - timedelta(hours=hours)
        OrderFactory(product=gift, state=OrderState.DELIVERED, created_at=at, paid_at=at, quantity=2)
    OrderFactory(product=manual, state=OrderState.PAID, created_at=now, paid_at=now)
    OrderFactory(product=gift, state=OrderState.PENDING, created_at=now)
    OrderFactory(product=gift, state=OrderState.REVIEW, created_at=now - timedelta(minutes=20))
    for minutes, decision in ((5, "allow"), (6, "allow"), (20, "review"), (70, "block"), (200, "challenge")):
        AssessmentFactory(decision=decision, created_at=now - timedelta(minutes=minutes))


def _login(browser, base: str, viewport: dict, locale: str):
    from django.contrib.auth import get_user_model

    if not get_user_model().objects.filter(username="op").exists():
        get_user_model().objects.create_superuser("op", "op@example.com", PASSWORD)
    context = browser.new_context(viewport=viewport, locale=locale)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "op")
    page.fill("#id_password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#dashboard")
    return context, page, errors


@pytest.mark.parametrize(("viewport", "locale", "lang"), SCREENS, ids=SCREEN_IDS)
def test_the_dashboard_draws_its_charts(browser, live_server, shop, artifacts_dir, viewport, locale, lang, settings):
    settings.CARDSHOP_ADMIN_OTP_REQUIRED = False
    context, page, errors = _login(browser, live_server.url, viewport, locale)
    try:
        assert page.locator("html").get_attribute("lang") == lang
        # Chart.js (the theme's) turns every chart canvas into a drawn chart once the page has loaded.
        page.wait_for_function(
            "[...document.querySelectorAll('#dashboard canvas.chart')].filter(c => Chart.getChart(c)).length === 7"
        )
        hourly = page.evaluate(
            "Chart.getChart(document.querySelectorAll('#dashboard canvas.chart')[0]).data.datasets[1].data"
        )
        assert sum(hourly) >= 1  # the order paid an hour ago (or two, if it was today in the shop's zone)
        # Risk's decisions: one stacked dataset per outcome, the five assessments all inside the 24 hours.
        risk = page.evaluate(
            "(() => { const c = Chart.getChart(document.querySelector('#dashboard-risk canvas.chart'));"
            " return [c.options.scales.y.stacked, c.data.datasets.map(d => d.data.reduce((a, b) => a + b, 0))]; })()"
        )
        assert risk == [True, [2, 1, 1, 1]]
        heading = "今日销售额" if lang == "zh-hans" else "Sales today"
        assert page.get_by_text(heading).count() == 1
        if viewport == PHONE:
            assert_no_horizontal_scroll(page, f"admin-{screen_name(viewport, lang)}-dashboard", artifacts_dir)
        else:
            page.screenshot(
                path=str(artifacts_dir / f"admin-{screen_name(viewport, lang)}-dashboard.png"), full_page=True
            )
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize(("locale", "lang"), [("en-US", "en"), ("zh-CN", "zh-hans")], ids=["en", "zh"])
def test_the_order_list_keeps_each_row_on_one_line_at_1400px(
    browser, live_server, shop, artifacts_dir, locale, lang, settings
):
    settings.CARDSHOP_ADMIN_OTP_REQUIRED = False
    context, page, errors = _login(browser, live_server.url, DESKTOP, locale)
    try:
        page.goto(f"{live_server.url}/admin/cardshop/order/")
        rows = page.evaluate(
            """[...document.querySelectorAll('#result_list tbody tr')].map(tr => {
                 const cells = [...tr.querySelectorAll('td, th')].filter(c => c.innerText.trim());
                 const line = parseFloat(getComputedStyle(cells[0]).lineHeight) || 20;
                 return cells.map(c => c.getClientRects()[0].height / line);
               })"""
        )
        assert len(rows) == 7  # the order in review among them
        for cells in rows:
            assert max(cells) < 2.5, cells  # one line of text plus the cell's padding, never two lines
        page.screenshot(path=str(artifacts_dir / f"admin-1400-{lang.split('-')[0]}-orders.png"))
        assert not errors, errors
    finally:
        context.close()
