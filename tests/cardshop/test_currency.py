"""Issue 9 point 8 (currency part): a currency is a validated ISO 4217 code the money module supports; a product
no enabled channel can take payment for cannot be put on sale, checkout refuses it before reserving anything,
and no page answers 500 for such data."""

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from cardshop.models import CardSecret, Order, OrderState, Product, SecretStatus
from cardshop.services.notifications import order_link
from core.money import CURRENCY_EXPONENTS, MoneyError, currency_validate
from payments.services import channel_choice
from tests.cardshop.helpers import buy
from tests.conftest import make_product
from tests.factories.payments import EpayAccountFactory
from tests.operators.auth import operator_login

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _public_url(settings):
    settings.CARDSHOP_PUBLIC_URL = "http://testserver"


@pytest.mark.parametrize("code", ["CNY", "USD", "EUR", "HKD", "JPY"])
def test_supported_codes_pass(code):
    assert currency_validate(code) == code


@pytest.mark.parametrize("code", ["cny", " CNY", "CNY\n", "CN", "CNYY", "XYZ", "GBP", "", None, 156, "ＣＮＹ"])
def test_anything_else_is_refused(code):
    with pytest.raises(MoneyError):
        currency_validate(code)


def test_a_product_currency_must_be_a_supported_code(merchant, epay_account):
    for bad in ("usd", "XYZ", "GBP", "US$"):
        product = Product(merchant=merchant, name="x", slug=f"p-{bad.lower()[:2]}", price_minor=100, currency=bad)
        with pytest.raises(ValidationError) as refused:
            product.full_clean()
        assert "currency" in refused.value.message_dict
        assert "ISO 4217" in refused.value.message_dict["currency"][0]
    Product(merchant=merchant, name="ok", slug="ok", price_minor=100, currency="CNY").full_clean()


def test_a_product_no_enabled_channel_serves_cannot_go_on_sale(merchant, epay_account):
    usd_account = EpayAccountFactory(currency="USD", enabled=False)
    product = Product(merchant=merchant, name="x", slug="usd-x", price_minor=100, currency="USD", is_active=True)
    with pytest.raises(ValidationError) as refused:
        product.full_clean()
    assert "No enabled payment channel accepts USD" in refused.value.message_dict["is_active"][0]

    product.is_active = False  # off sale it may be prepared
    product.full_clean()
    product.save()
    product.is_active = True  # activating is refused
    with pytest.raises(ValidationError):
        product.full_clean()

    usd_account.enabled = True
    usd_account.save()
    channel_choice.cache_clear()
    product.full_clean()  # now a channel takes USD
    product.save()

    # Moving an on-sale product to a currency nobody serves is refused too.
    product.currency = "EUR"
    with pytest.raises(ValidationError):
        product.full_clean()


def test_the_admin_refuses_to_put_such_a_product_on_sale(client, merchant, epay_account):
    from django.contrib.auth import get_user_model

    operator_login(client, get_user_model().objects.create_superuser("op", "op@example.com", "op-pass-123456"))
    data = {
        "merchant": merchant.pk,
        "name": "Dollar card",
        "slug": "dollar-card",
        "description": "",
        "price_minor": 500,
        "currency": "USD",
        "delivery_kind": "unique",
        "reusable_secret": "",
        "custom_fields": "[]",
        "min_quantity": 1,
        "max_quantity": 5,
        "is_active": "on",
        "sort_order": 0,
    }
    resp = client.post("/admin/cardshop/product/add/", data)
    assert resp.status_code == 200
    assert "No enabled payment channel accepts USD" in resp.content.decode()
    assert not Product.objects.filter(slug="dollar-card").exists()
    data["currency"] = "usd"
    assert (
        "not a supported ISO 4217 currency code" in client.post("/admin/cardshop/product/add/", data).content.decode()
    )


def test_checkout_refuses_an_unserved_currency_before_reserving_stock(client, merchant, epay_account):
    product = make_product(merchant, secrets_count=3, currency="USD")  # on sale from before its channel went
    before = list(CardSecret.objects.order_by("pk").values_list("pk", "status", "order_id", "reserved_until"))
    page = client.post(
        f"/p/{product.slug}/",
        {"quantity": 1, "email": "b@example.com", "query_password": "secret1"},
        REMOTE_ADDR="10.0.0.1",
    )
    assert page.status_code == 400
    assert "no payment method accepts USD" in page.content.decode()
    assert Order.objects.count() == 0
    assert list(CardSecret.objects.order_by("pk").values_list("pk", "status", "order_id", "reserved_until")) == before
    assert set(CardSecret.objects.values_list("status", flat=True)) == {SecretStatus.AVAILABLE}

    from core.errors import DomainError

    with pytest.raises(DomainError) as refused:
        buy(product)
    assert refused.value.code == "currency_unserved"


def _walk(client, order: Order, products: list[Product]) -> dict[str, int]:
    codes = {"/": client.get("/").status_code}
    for p in products:
        codes[f"/p/{p.slug}/"] = client.get(f"/p/{p.slug}/").status_code
        codes[f"POST /p/{p.slug}/"] = client.post(
            f"/p/{p.slug}/", {"quantity": 1, "email": "walker@example.com", "query_password": "secret1"}
        ).status_code
    link = order_link(order.order_no).removeprefix("http://testserver")
    codes["order link"] = client.get(link).status_code
    for path in ("", "pay/", "status/", "pay/qr.png"):
        url = f"/orders/{order.order_no}/{path}"
        codes[url] = client.get(url).status_code
    lookup = client.post("/orders/lookup/", {"order_no_or_email": order.order_no, "query_password": "secret1"})
    codes["lookup"] = lookup.status_code
    return codes


def test_no_page_answers_500_for_unpayable_currencies(client, merchant, epay_account, settings):
    # A USD channel took orders, then was disabled; the USD product stayed on sale; an order was left pending.
    usd_account = EpayAccountFactory(currency="USD", enabled=True)
    channel_choice.cache_clear()
    usd = make_product(merchant, secrets_count=2, currency="USD")
    usd_order = buy(usd, email="usd@example.com", ip="10.0.0.7")
    usd_account.enabled = False
    usd_account.save()
    channel_choice.cache_clear()
    # Legacy rows from before currencies were validated: a code the money module does not know.
    legacy = make_product(merchant, secrets_count=1, currency="GBP", slug="legacy-gbp")
    legacy_order = Order.objects.create(
        order_no="20260101000000000001",
        merchant=merchant,
        product=legacy,
        quantity=1,
        list_price_minor=legacy.price_minor,
        unit_price_minor=legacy.price_minor,
        amount_minor=legacy.price_minor,
        currency="GBP",
        email="gbp@example.com",
        query_password_hash=usd_order.query_password_hash,
        expires_at=timezone.now() + timezone.timedelta(minutes=15),
    )
    cny = make_product(merchant, secrets_count=1)

    usd_codes = _walk(client, usd_order, [usd, legacy, cny])
    legacy_codes = _walk(client, legacy_order, [legacy])

    for codes in (usd_codes, legacy_codes):
        assert all(code < 500 for code in codes.values()), codes
    assert usd_codes["/"] == 200
    assert usd_codes[f"/p/{usd.slug}/"] == 200
    assert usd_codes[f"POST /p/{usd.slug}/"] == 400
    assert usd_codes[f"POST /p/{legacy.slug}/"] == 400
    assert usd_codes[f"/orders/{usd_order.order_no}/"] == 200
    assert usd_codes[f"/orders/{usd_order.order_no}/pay/"] == 409
    assert legacy_codes[f"/orders/{legacy_order.order_no}/pay/"] == 409
    pay = client.get(f"/orders/{usd_order.order_no}/pay/").content.decode()
    assert "no payment method accepts USD" in pay
    catalog = client.get("/").content.decode()
    assert "GBP" in catalog  # the legacy price still shows, in minor units
    # Only the walk's CNY checkout made an order; nothing was reserved for the refused ones.
    assert Order.objects.exclude(pk__in=[usd_order.pk, legacy_order.pk]).get().product_id == cny.pk
    assert CardSecret.objects.filter(product=legacy, status=SecretStatus.AVAILABLE).count() == 1
    usd_order.refresh_from_db()
    assert usd_order.state == OrderState.PENDING
    assert set(CURRENCY_EXPONENTS) >= {"CNY", "USD"}
