"""Every admin change list and change page renders with demo-like data, and shows money in major units."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from cardshop.models import CardSecret, Order, OrderState, Product
from cardshop.services import refunds
from payments.models import ChannelAccount, Payment, Refund, RoutingSettings
from tests.factories.cardshop import OrderFactory
from tests.factories.risk import AssessmentFactory
from tests.operators.auth import operator_login, staff_user

pytestmark = pytest.mark.django_db


def minor_shown(page: str, minor: int) -> bool:
    """`minor` as a bare number in the page (not part of a token, a decimal or another number). A select's
    option values are row ids (the user page lists every permission by id), never amounts."""
    page = re.sub(r'<option value="\d+"', "<option", page)
    # Nor a slug's counter: factories name products product-137 and the like.
    return re.search(rf"(?<![\w.,])(?<![A-Za-z]-){minor}(?![\w.,])", page) is not None


@pytest.fixture
def op(db) -> Client:
    return operator_login(Client(), staff_user("op", superuser=True))


@pytest.fixture
def demo(paid_order, epay_account, django_capture_on_commit_callbacks):
    """A product at 9.90 CNY, a delivered-then-refunded order, its payment and refund, an account with limits
    and fees, routing thresholds, and an order of 2 codes held for review with its assessment (the review queue
    and its page): every amount distinctive so a minor-unit leak is visible."""
    ChannelAccount.objects.filter(pk=epay_account.pk).update(
        fee_fixed_minor=137, min_amount_minor=123, max_amount_minor=456789, daily_cap_minor=9876543
    )
    RoutingSettings.objects.update_or_create(pk=1, defaults={"small_below_minor": 1234, "large_above_minor": 567890})
    with django_capture_on_commit_callbacks(execute=True):
        refunds.order_refund_request(order_no=paid_order.order_no, actor="op", reason="buyer asked")
    held = OrderFactory(product=paid_order.product, state=OrderState.REVIEW, quantity=2, email="held@example.com")
    AssessmentFactory(
        order_no=held.order_no,
        decision="review",
        reasons=["big_order"],
        score=0.64,
        ruleset_version=2,
        features={"amount_minor": 1980, "ip_amount_1d": 456789, "quantity": 2, "buyer_paid_before": False},
    )
    return paid_order


def _admin_urls() -> list[tuple[str, str]]:
    urls = []
    for model, _model_admin in admin.site._registry.items():
        meta = model._meta
        urls.append((f"{meta.label} list", reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")))
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            urls.append(
                (f"{meta.label} #{obj.pk}", reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk]))
            )
    return urls


def test_every_change_list_and_change_page_renders_without_minor_units(op, demo):
    assert Refund.objects.get().status == "succeeded"
    pages = {}
    for name, url in _admin_urls():
        resp = op.get(url)
        assert resp.status_code == 200, (name, url, resp.status_code)
        pages[name] = resp.content.decode()
    for name, page in pages.items():
        for minor in (990, 1980, 137, 456789, 9876543, 1234, 567890):
            assert not minor_shown(page, minor), f"{name} shows {minor} in minor units"
    assert "9.90 CNY" in pages["cardshop.Order list"]
    queue = pages["cardshop.OrderInReview list"]
    assert "19.80 CNY" in queue and "<code>big_order</code>" in queue and "he***@example.com" in queue
    held = next(name for name in pages if name.startswith("cardshop.OrderInReview #"))
    assert "<code>ip_amount_1d</code>: 4567.89 CNY" in pages[held] and "held@example.com" not in pages[held]
    assert "9.90 CNY" in pages[f"cardshop.Order #{demo.pk}"]
    assert "9.90 CNY" in pages["cardshop.Product list"]
    assert "9.90 CNY" in pages["payments.Payment list"]
    assert "9.90 CNY" in pages["payments.Refund list"]
    accounts = pages["payments.ChannelAccount list"]
    assert "1.37 CNY" in accounts and "1.23 CNY / 4567.89 CNY / 98765.43 CNY" in accounts
    assert "12.34 CNY" in pages["payments.RoutingSettings list"]
    assert "5678.90 CNY" in pages["payments.RoutingSettings list"]
    product_page = pages[f"cardshop.Product #{Product.objects.order_by('pk').first().pk}"]
    assert 'value="9.90"' in product_page
    account_page = pages[f"payments.ChannelAccount #{ChannelAccount.objects.order_by('pk').first().pk}"]
    for shown in ('value="1.37"', 'value="1.23"', 'value="4567.89"', 'value="98765.43"'):
        assert shown in account_page
    routing_page = pages["payments.RoutingSettings #1"]
    assert 'value="12.34"' in routing_page and 'value="5678.90"' in routing_page
    assert Payment.objects.exists() and CardSecret.objects.exists() and Order.objects.exists()


def test_every_admin_page_renders_in_chinese_too(op, demo):
    for name, url in _admin_urls():
        resp = op.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans")
        assert resp.status_code == 200, (name, url, resp.status_code)
        assert 'lang="zh-hans"' in resp.content.decode()
    export = op.get(reverse("admin:cardshop_order_export"), HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert export.status_code == 200


def _product_data(product: Product, price: str) -> dict:
    return {
        "merchant": product.merchant_id,
        "name": product.name,
        "slug": product.slug,
        "description": "",
        "price_minor": price,
        "currency": "CNY",
        "delivery_kind": product.delivery_kind,
        "reusable_secret": "",
        "custom_fields": "[]",
        "min_quantity": 1,
        "max_quantity": 5,
        "is_active": "on",
        "sort_order": 0,
    }


def test_price_is_typed_in_major_units_and_stored_in_minor(op, product):
    url = reverse("admin:cardshop_product_change", args=[product.pk])
    resp = op.post(url, _product_data(product, "12.50"))
    assert resp.status_code == 302, resp.content.decode()[:3000]
    product.refresh_from_db()
    assert product.price_minor == 1250


@pytest.mark.parametrize("typed", ["12.505", "1e3", "-1", "abc", "12,50"])
def test_an_amount_that_is_not_major_units_is_a_form_error(op, product, typed):
    url = reverse("admin:cardshop_product_change", args=[product.pk])
    resp = op.post(url, _product_data(product, typed))
    assert resp.status_code == 200
    assert "Enter an amount in CNY like 9.90" in resp.content.decode()
    product.refresh_from_db()
    assert product.price_minor == 990


def test_a_jpy_price_has_no_decimals(op, product):
    url = reverse("admin:cardshop_product_change", args=[product.pk])
    data = {**_product_data(product, "1200"), "currency": "JPY"}
    del data["is_active"]  # off sale: no channel takes JPY
    resp = op.post(url, data)
    assert resp.status_code == 302, re.findall(r"errorlist.{0,300}", resp.content.decode())
    product.refresh_from_db()
    assert (product.price_minor, product.currency) == (1200, "JPY")
    data["price_minor"] = "12.5"
    assert "Enter an amount in JPY" in op.post(url, data).content.decode()


def test_channel_account_limits_are_typed_in_major_units(op, epay_account):
    data = {
        "code": "epay",
        "name": epay_account.name,
        "merchant_no": epay_account.merchant_no,
        "base_url": epay_account.base_url,
        "currency": "CNY",
        "credentials": "",
        "enabled": "on",
        "priority": 100,
        "fee_rate_bp": 60,
        "fee_fixed_minor": "0.30",
        "min_amount_minor": "1",
        "max_amount_minor": "",
        "daily_cap_minor": "20000.00",
    }
    resp = op.post(reverse("admin:payments_channelaccount_change", args=[epay_account.pk]), data)
    assert resp.status_code == 302, resp.content.decode()[:3000]
    epay_account.refresh_from_db()
    assert (epay_account.fee_fixed_minor, epay_account.min_amount_minor) == (30, 100)
    assert (epay_account.max_amount_minor, epay_account.daily_cap_minor) == (None, 2000000)


@pytest.fixture(scope="module")
def sim_accounts(tmp_path_factory):
    """Each simulator's account file, as `make run` has them written (same as tests/cardshop/test_seed_demo)."""
    import json

    from payments.simulators.catalog import SIMULATORS, simulator_class

    folder = tmp_path_factory.mktemp("sim")
    for code in SIMULATORS:
        sim = simulator_class(code)().start()
        try:
            acct = sim.account(webhook_url=f"http://127.0.0.1:8000/notify/{code}/")
            (folder / f"{code}.json").write_text(json.dumps(acct.__dict__))
        finally:
            sim.stop()
    return folder


def test_the_seeded_demo_renders_on_every_admin_page_in_both_languages(op, sim_accounts):
    from django.core.management import call_command

    call_command("seed_demo", sim_accounts=str(sim_accounts), stdout=io.StringIO())
    products = list(Product.objects.all())
    assert products
    for lang in ("en", "zh-hans"):
        for name, url in _admin_urls():
            resp = op.get(url, HTTP_ACCEPT_LANGUAGE=lang)
            assert resp.status_code == 200, (lang, name, url, resp.status_code)
    listing = op.get(reverse("admin:cardshop_product_changelist")).content.decode()
    for p in products:
        assert str(p.price) in listing  # operators read "9.90 CNY"
        page = op.get(reverse("admin:cardshop_product_change", args=[p.pk])).content.decode()
        assert f'name="price_minor" value="{p.price.to_decimal_str()}"' in page


def test_buyer_fields_are_edited_as_rows(op, merchant, epay_account):
    from tests.conftest import make_product

    product = make_product(
        merchant,
        secrets_count=0,
        kind="manual",
        custom_fields=[{"name": "account", "label": "Game account", "required": True}],
    )
    url = reverse("admin:cardshop_product_change", args=[product.pk])
    page = op.get(url).content.decode()
    assert "account | Game account | required</textarea>" in page
    data = {**_product_data(product, "9.90"), "custom_fields": "account | Game account | required\nserver | Server"}
    assert op.post(url, data).status_code == 302
    product.refresh_from_db()
    assert product.custom_fields == [
        {"name": "account", "label": "Game account", "required": True},
        {"name": "server", "label": "Server", "required": False},
    ]
    data["custom_fields"] = "account\naccount"
    assert "the name account is used twice" in op.post(url, data).content.decode()
    data["custom_fields"] = "bad name | x"
    assert "Line 1: write name | label | required" in op.post(url, data).content.decode()
