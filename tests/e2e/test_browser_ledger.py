"""Proof 7: an operator opens an order in the admin, in a real browser, and reads its ledger lines; the party
balances page shows what the sale left each party; the settlement dashboard draws its charts. Screenshots saved
as artifacts."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

from cardshop.models import OrderState
from core.parties import agent_create
from settlement import facade as settlement
from tests.factories.cardshop import OrderFactory, ProductFactory
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "op-pass-123456"


@pytest.fixture
def booked_order(merchant):
    agent = agent_create(name="City agent", parent_id=agent_create(name="Regional agent").pk)
    merchant.agent = agent
    merchant.save(update_fields=["agent"])
    FeePlanFactory(merchant=merchant, cycle="T+0")
    product = ProductFactory(merchant=merchant, name="Gift code", price_minor=990, secrets_count=1)
    now = timezone.now()
    order = OrderFactory(product=product, state=OrderState.DELIVERED, created_at=now, paid_at=now)
    with transaction.atomic():
        settlement.sale_post(
            out_trade_no="P-E2E-1",
            order_no=order.order_no,
            merchant_id=merchant.pk,
            gross_minor=990,
            currency="CNY",
            channel_account_id=1,
            channel_fee_minor=6,
        )
    return order


def test_an_operator_sees_the_orders_ledger_lines(browser, live_server, booked_order, artifacts_dir, settings):
    from django.contrib.auth import get_user_model

    settings.CARDSHOP_ADMIN_OTP_REQUIRED = False
    get_user_model().objects.create_superuser("op", "op@example.com", PASSWORD)
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "op")
        page.fill("#id_password", PASSWORD)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#dashboard")
        page.goto(f"{live_server.url}/admin/cardshop/order/{booked_order.pk}/change/")
        ledger = page.locator("table.order-ledger")
        ledger.wait_for()
        rows = ledger.locator("tr")
        assert rows.count() == 8  # the header and the sale's seven lines
        texts = [rows.nth(i).inner_text() for i in range(1, 8)]
        assert any("channel clearing" in t and "9.84 CNY" in t for t in texts)
        assert any("merchant available" in t and "-8.31 CNY" in t for t in texts)
        assert any("City agent" in t and "-0.20 CNY" in t for t in texts)
        assert any("platform fee revenue" in t and "-0.30 CNY" in t for t in texts)
        assert rows.nth(1).inner_text().startswith("sale:P-E2E-1")
        page.screenshot(path=str(artifacts_dir / "admin-order-ledger.png"), full_page=True)

        page.goto(f"{live_server.url}/admin/settlement/ledgeraccount/balances/")
        merchant_row = page.locator(f"#party-merchant-{booked_order.merchant_id}-CNY")
        assert "8.31 CNY" in merchant_row.inner_text() and "0.99 CNY" in merchant_row.inner_text()
        page.screenshot(path=str(artifacts_dir / "admin-party-balances.png"), full_page=True)

        page.goto(f"{live_server.url}/admin/settlement/dashboard/")
        page.wait_for_function(  # the daily gross volume and the CNY split, drawn by the theme's Chart.js
            "[...document.querySelectorAll('#settlement-dashboard canvas.chart')].filter(c => Chart.getChart(c))"
            ".length === 2"
        )
        page.screenshot(path=str(artifacts_dir / "admin-settlement-dashboard.png"), full_page=True)
        assert not errors, errors
    finally:
        context.close()
