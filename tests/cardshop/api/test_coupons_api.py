"""Coupons through the API (issue 14): made with the model's checks, listed, read and switched off; a code the
merchant already has is refused; another merchant's product is not found."""

from __future__ import annotations

from cardshop.models import Coupon
from tests.conftest import make_product
from tests.factories.core import MerchantFactory

COUPONS = "/api/v1/coupons/"


def test_coupons_are_made_listed_and_switched_off(api, shop_a):
    made = api.post(COUPONS, {"code": "spring", "kind": "percent", "percent_off": 20, "max_uses": 100}, format="json")
    assert made.status_code == 201, made.json()
    body = made.json()
    assert (body["code"], body["kind"], body["percent_off"], body["amount_off"], body["uses"]) == (
        "SPRING",
        "percent",
        20,
        None,
        0,
    )
    fixed = {
        "code": "TEN",
        "kind": "fixed",
        "amount_off": {"amount_minor": 1000, "currency": "CNY"},
        "product": shop_a.pk,
    }
    assert api.post(COUPONS, fixed, format="json").json()["amount_off"] == {"amount_minor": 1000, "currency": "CNY"}
    assert [c["code"] for c in api.get(COUPONS).json()["data"]] == ["TEN", "SPRING"]
    off = api.post(f"{COUPONS}{body['id']}/deactivate/")
    assert off.status_code == 200 and off.json()["is_active"] is False
    assert not Coupon.objects.get(code="SPRING").is_active


def test_bad_coupons_are_refused_naming_the_field(api, shop_a):
    api.post(COUPONS, {"code": "ONCE", "kind": "percent", "percent_off": 5}, format="json")
    other = make_product(MerchantFactory(), slug="theirs", secrets_count=0)
    for body, param in (
        ({"code": "ONCE", "kind": "percent", "percent_off": 5}, "code"),  # taken
        ({"code": "HALF", "kind": "percent"}, "percent_off"),
        ({"code": "FIX", "kind": "fixed"}, "amount_off_minor"),
        ({"code": "THEIRS", "kind": "percent", "percent_off": 5, "product": other.pk}, None),
        ({"code": "x", "kind": "percent", "percent_off": 5}, "code"),
        ({"code": "FULL", "kind": "percent", "percent_off": 100}, "percent_off"),
    ):
        refused = api.post(COUPONS, body, format="json")
        assert refused.status_code in (400, 404), (body, refused.json())
        if param:
            assert refused.json()["error"]["param"] == param, (body, refused.json())
    assert list(Coupon.objects.values_list("code", flat=True)) == ["ONCE"]
