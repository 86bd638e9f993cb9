"""The admin's home page is the dashboard: the figures of cardshop.dashboard rendered for operators who may see
orders, with the charts fed to the theme's Chart.js and links to what needs a hand."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from cardshop.models import DeliveryKind, OrderState
from tests.factories.cardshop import OrderFactory, ProductFactory
from tests.factories.core import MerchantFactory
from tests.operators.auth import operator_login, staff_user

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai, a Wednesday


@pytest.fixture
def shop(time_machine):
    time_machine.move_to(NOW, tick=False)
    merchant = MerchantFactory()
    gift = ProductFactory(merchant=merchant, name="Gift CNY", price_minor=990, currency="CNY", secrets_count=2)
    manual = ProductFactory(merchant=merchant, name="Top-up", price_minor=1500, delivery_kind=DeliveryKind.MANUAL)
    at = NOW - timedelta(hours=1)  # 13:00 shop time
    paid = [OrderFactory(product=gift, state=OrderState.DELIVERED, created_at=at, paid_at=at) for _ in range(2)]
    waiting = OrderFactory(product=manual, state=OrderState.PAID, created_at=at, paid_at=at)
    stuck = OrderFactory(product=gift, state=OrderState.UNDELIVERABLE, created_at=at, paid_at=at)
    return {"gift": gift, "paid": paid, "waiting": waiting, "stuck": stuck}


def _chart(page: str, name: str) -> dict:
    canvas = re.search(rf'data-value="([^"]*)"[^>]*>\s*</canvas>\s*</div>\s*<!-- {name} -->', page)
    return json.loads(html.unescape(canvas.group(1)))


def test_the_admin_home_shows_todays_sales_and_what_needs_an_operator(shop):
    op = operator_login(Client(), staff_user("op", superuser=True))
    page = op.get(reverse("admin:index")).content.decode()
    assert 'id="dashboard"' in page
    today = re.search(r'id="sales-today">(.*?)</div>', page, re.S).group(1)
    assert "44.70 CNY" in today  # 9.90 twice delivered, 15.00 waiting for delivery, 9.90 stuck: all paid today
    orders_today = re.search(r'id="orders-today">(.*?)</div>', page, re.S).group(1)
    assert re.search(r"\b4 paid\b", orders_today) and re.search(r"\b4 placed\b", orders_today)
    manual = re.search(r'id="dashboard-manual">(.*?)</table>', page, re.S).group(1)
    assert reverse("admin:cardshop_order_change", args=[shop["waiting"].pk]) in manual
    stuck = re.search(r'id="dashboard-undeliverable">(.*?)</table>', page, re.S).group(1)
    assert shop["stuck"].order_no in stuck
    low = re.search(r'id="dashboard-low-stock">(.*?)</table>', page, re.S).group(1)
    assert "Gift CNY" in low and reverse("admin:cardshop_product_import", args=[shop["gift"].pk]) in low
    assert "Asia/Shanghai" in page and "CST" not in page


def test_the_hourly_chart_is_in_shop_time(shop):
    op = operator_login(Client(), staff_user("op", superuser=True))
    page = op.get(reverse("admin:index")).content.decode()
    hourly = _chart(page, "hourly-orders")
    assert len(hourly["labels"]) == 24
    paid = hourly["datasets"][1]["data"]
    assert paid[13] == 4 and sum(paid) == 4  # 05:00 UTC is 13:00 in Shanghai


def test_staff_who_may_not_see_orders_get_no_figures(shop):
    clerk = operator_login(Client(), staff_user("clerk", "cardshop.view_product"))
    page = clerk.get(reverse("admin:index")).content.decode()
    assert 'id="dashboard"' not in page and "44.70" not in page
