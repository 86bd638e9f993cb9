"""Lists are cursor-paged newest first: rows made while a client walks the pages neither repeat nor go missing."""

from __future__ import annotations

from cardshop.models import Product

PRODUCTS = "/api/v1/products/"


def made(merchant, n: int, start: int) -> list[int]:
    return [
        Product.objects.create(merchant=merchant, name=f"P{i}", slug=f"p-{i}", price_minor=100).pk
        for i in range(start, start + n)
    ]


def test_pages_stay_stable_while_products_are_added(api, shop_a):
    ids = [shop_a.pk, *made(shop_a.merchant, 24, 0)]
    first = api.get(PRODUCTS, {"limit": 10}).json()
    assert first["object"] == "list" and first["has_more"] is True and first["previous"] is None
    assert [p["id"] for p in first["data"]] == ids[::-1][:10]
    made(shop_a.merchant, 5, 100)  # arrive at the top while the client is on page 1
    seen = [p["id"] for p in first["data"]]
    page = first
    while page["has_more"]:
        page = api.get(page["next"]).json()
        seen += [p["id"] for p in page["data"]]
    assert seen == ids[::-1]  # every row of the walk's start once, in order, none repeated


def test_the_limit_is_1_to_100_and_20_by_default(api, shop_a):
    made(shop_a.merchant, 120, 0)
    assert len(api.get(PRODUCTS, {"limit": 100}).json()["data"]) == 100
    assert len(api.get(PRODUCTS).json()["data"]) == 20
    for wrong in ("101", "0", "-1", "ten", "1.5"):
        refused = api.get(PRODUCTS, {"limit": wrong})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "limit", wrong
