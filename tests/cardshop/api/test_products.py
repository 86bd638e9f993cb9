"""Products through the API: made, listed, changed, retired, stocked; money is minor units with its currency."""

from __future__ import annotations

from cardshop.models import CardSecret, Product
from core.models import AuditEvent

PRODUCTS = "/api/v1/products/"
NEW = {"name": "Steam 50", "slug": "steam-50", "price": {"amount_minor": 4990, "currency": "CNY"}}


def test_a_product_is_made_and_shown_with_its_price_and_stock(api, shop_a):
    made = api.post(PRODUCTS, NEW, format="json")
    assert made.status_code == 201
    body = made.json()
    product = Product.objects.get(slug="steam-50")
    assert body == {
        "id": product.pk,
        "name": "Steam 50",
        "slug": "steam-50",
        "description": "",
        "price": {"amount_minor": 4990, "currency": "CNY"},
        "delivery_kind": "unique",
        "custom_fields": [],
        "price_tiers": [],
        "min_quantity": 1,
        "max_quantity": 5,
        "is_active": True,
        "category": None,
        "sort_order": 0,
        "stock": 0,
        "created_at": body["created_at"],
    }
    assert product.merchant_id == shop_a.merchant_id and product.price_minor == 4990
    assert api.get(f"{PRODUCTS}{product.pk}/").json() == body
    assert AuditEvent.objects.filter(action="product_created", target=f"product:{product.pk}").exists()


def test_bad_input_names_the_field_and_makes_nothing(api, shop_a):
    for body, param in [
        ({**NEW, "price": {"amount_minor": 0, "currency": "CNY"}}, "price.amount_minor"),
        ({**NEW, "price": {"amount_minor": 100, "currency": "XXX"}}, "price.currency"),
        ({**NEW, "slug": "a-code"}, "slug"),  # taken (slugs are the storefront's URLs)
        ({**NEW, "min_quantity": 3, "max_quantity": 2}, "max_quantity"),
        ({**NEW, "delivery_kind": "reusable"}, "reusable_secret"),  # the model's own rule, as in the admin
        ({**NEW, "price": {"amount_minor": 100, "currency": "USD"}}, "is_active"),  # no channel takes USD
        ({"name": "x"}, "slug"),
    ]:
        answer = api.post(PRODUCTS, body, format="json")
        assert answer.status_code == 400, body
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"], body
    assert list(Product.objects.values_list("slug", flat=True)) == ["a-code"]


def test_a_reusable_secret_is_written_and_never_shown(api, shop_a):
    made = api.post(PRODUCTS, {**NEW, "delivery_kind": "reusable", "reusable_secret": "SHARED-KEY-1"}, format="json")
    assert made.status_code == 201 and "SHARED-KEY-1" not in made.content.decode()
    assert made.json()["stock"] is None and "reusable_secret" not in made.json()
    assert Product.objects.get(slug="steam-50").reusable_secret == "SHARED-KEY-1"


def test_a_product_is_changed_and_retired(api, shop_a):
    changed = api.patch(
        f"{PRODUCTS}{shop_a.pk}/",
        {"name": "Renamed", "price": {"amount_minor": 1234, "currency": "CNY"}},
        format="json",
    )
    assert changed.status_code == 200 and changed.json()["name"] == "Renamed"
    assert changed.json()["price"] == {"amount_minor": 1234, "currency": "CNY"}
    retired = api.post(f"{PRODUCTS}{shop_a.pk}/retire/")
    assert retired.status_code == 200 and retired.json()["is_active"] is False
    shop_a.refresh_from_db()
    assert (shop_a.name, shop_a.price_minor, shop_a.is_active) == ("Renamed", 1234, False)
    assert CardSecret.objects.filter(product=shop_a).count() == 3  # its codes stay
    assert api.get(f"{PRODUCTS}{shop_a.pk}/").status_code == 200  # still the merchant's, off sale


def test_stock_upload_reports_what_it_took_and_what_it_skipped(api, shop_a):
    other = Product.objects.create(merchant=shop_a.merchant, name="Other", slug="other", price_minor=100)
    api.post(f"{PRODUCTS}{other.pk}/stock/", {"codes": "ELSEWHERE-1"}, format="json")
    answer = api.post(
        f"{PRODUCTS}{shop_a.pk}/stock/", {"codes": "NEW-1\nNEW-2\nNEW-1\n\nELSEWHERE-1\n" + "x" * 1001}, format="json"
    )
    assert answer.status_code == 201
    assert answer.json() == {"imported": 2, "duplicates": 2, "duplicates_elsewhere": 1, "invalid": 1}
    assert api.get(f"{PRODUCTS}{shop_a.pk}/").json()["stock"] == 5
