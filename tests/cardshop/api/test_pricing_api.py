"""Tiers and coupons through the API and the storefront (issue 14): tiers as money objects in the product's currency,
an order made with a coupon showing its list price, unit price, discount and amount, and the product page's tiers,
coupon field and running total."""

from __future__ import annotations

import re

from cardshop.models import Coupon, Order, Product

PRODUCTS, ORDERS = "/api/v1/products/", "/api/v1/orders/"


def cny(minor: int) -> dict:
    return {"amount_minor": minor, "currency": "CNY"}


def test_a_products_tiers_are_written_and_read_as_money(api, shop_a):
    tiers = [{"min_quantity": 10, "unit_price": cny(900)}, {"min_quantity": 5, "unit_price": cny(950)}]
    changed = api.patch(f"{PRODUCTS}{shop_a.pk}/", {"price_tiers": tiers}, format="json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["price_tiers"] == [tiers[1], tiers[0]]  # kept in order of quantity
    assert Product.objects.get(pk=shop_a.pk).price_tiers == [
        {"min_quantity": 5, "unit_price_minor": 950},
        {"min_quantity": 10, "unit_price_minor": 900},
    ]
    for bad in (
        [{"min_quantity": 10, "unit_price": {"amount_minor": 900, "currency": "USD"}}],
        [{"min_quantity": 10, "unit_price": cny(shop_a.price_minor)}],
        [{"min_quantity": 1, "unit_price": cny(900)}],
        {"min_quantity": 10},
    ):
        refused = api.patch(f"{PRODUCTS}{shop_a.pk}/", {"price_tiers": bad}, format="json")
        assert refused.status_code == 400 and refused.json()["error"]["param"].startswith("price_tiers"), bad


def test_an_api_order_with_a_coupon_shows_what_it_was_sold_at(api, shop_a):
    Product.objects.filter(pk=shop_a.pk).update(price_tiers=[{"min_quantity": 2, "unit_price_minor": 900}])
    Coupon.objects.create(merchant=shop_a.merchant, code="WELCOME", kind="fixed", amount_off_minor=100, currency="CNY")
    made = api.post(
        ORDERS, {"product": shop_a.pk, "quantity": 2, "email": "b@example.com", "coupon": "welcome"}, format="json"
    )
    assert made.status_code == 201, made.json()
    body = made.json()
    assert (body["list_price"], body["unit_price"], body["discount"], body["coupon"], body["amount"]) == (
        cny(shop_a.price_minor),
        cny(900),
        cny(100),
        "WELCOME",
        cny(1700),
    )
    refused = api.post(ORDERS, {"product": shop_a.pk, "email": "c@example.com", "coupon": "NOPE"}, format="json")
    assert refused.status_code == 400 and refused.json()["error"] | {"message": ""} == {
        "type": "invalid_request_error",
        "code": "coupon_invalid",
        "message": "",
        "param": "coupon",
    }


def test_the_product_page_shows_its_tiers_and_takes_a_coupon(client, shop_a):
    Product.objects.filter(pk=shop_a.pk).update(price_tiers=[{"min_quantity": 2, "unit_price_minor": 900}])
    Coupon.objects.create(merchant=shop_a.merchant, code="HALF", kind="percent", percent_off=50)
    page = client.get(f"/p/{shop_a.slug}/").content.decode()
    assert "From 2: ¥9.00 each" in page and 'name="coupon"' in page
    assert 'data-tiers="[{&quot;min_quantity&quot;: 2, &quot;unit_price_minor&quot;: 900}]"' in page
    bought = client.post(
        f"/p/{shop_a.slug}/",
        {"quantity": 2, "email": "b@example.com", "query_password": "hunter22", "coupon": "half"},
    )
    assert bought.status_code == 302, bought.content.decode()[-3000:]
    order = Order.objects.get()
    assert (order.unit_price_minor, order.discount_minor, order.amount_minor) == (900, 900, 900)
    pay = client.get(bought["Location"]).content.decode()
    assert re.search(r'id="order-discount">Coupon HALF: −¥9.00<', pay) and 'id="order-amount">¥9.00<' in pay
    wrong = client.post(
        f"/p/{shop_a.slug}/",
        {"quantity": 1, "email": "c@example.com", "query_password": "hunter22", "coupon": "NOPE"},
    )
    assert wrong.status_code == 400 and "This coupon code is not valid." in wrong.content.decode()
