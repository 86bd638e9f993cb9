"""Each merchant's shop page /s/<merchant>/ (issue 14): its products on sale alone, under its categories, with its
own announcement, searchable like the catalog; the product page links back to it."""

from __future__ import annotations

import re

import pytest

from cardshop.models import Category, MerchantShopPage, ShopAnnouncement
from tests.conftest import make_product
from tests.factories.core import MerchantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_shops(merchant, epay_account):
    other = MerchantFactory(slug="pixel", name="Pixel Presets")
    cards = Category.objects.create(name="Gift cards", slug="gift-cards", sort_order=0)
    presets = Category.objects.create(name="Presets", slug="presets", sort_order=1)
    return {
        "mine": [
            make_product(merchant, name="Steam wallet code", category=cards),
            make_product(merchant, name="Windows key"),
        ],
        "theirs": [make_product(other, name="Film presets", category=presets)],
        "retired": make_product(other, name="Old presets", category=presets, is_active=False),
        "other": other,
    }


def names(page: str) -> list[str]:
    return re.findall(r'class="product-link" href="[^"]+">([^<]+)</a>', page)


def test_a_merchants_page_lists_its_products_alone_under_its_categories(client, two_shops, merchant):
    page = client.get(f"/s/{two_shops['other'].slug}/").content.decode()
    assert names(page) == ["Film presets"]  # neither the other merchant's nor its own retired one
    assert '<h1 id="shop-name">Pixel Presets</h1>' in page and "<title>Pixel Presets</title>" in page
    assert 'id="category-presets"' in page and 'id="category-gift-cards"' not in page  # its categories only
    mine = client.get(f"/s/{merchant.slug}/").content.decode()
    assert names(mine) == ["Steam wallet code", "Windows key"]
    assert 'href="?c=gift-cards"' in mine and f'action="/s/{merchant.slug}/"' in mine  # tabs and search stay here


def test_search_and_tabs_stay_inside_the_merchants_page(client, two_shops, merchant):
    found = client.get(f"/s/{merchant.slug}/", {"q": "windows"}).content.decode()
    assert names(found) == ["Windows key"]
    assert names(client.get(f"/s/{merchant.slug}/", {"q": "presets"}).content.decode()) == []
    assert names(client.get(f"/s/{merchant.slug}/", {"c": "gift-cards"}).content.decode()) == ["Steam wallet code"]


def test_its_announcement_replaces_the_shops(client, two_shops, merchant):
    ShopAnnouncement.objects.create(text="Shop-wide notice", is_active=True)
    MerchantShopPage.objects.create(merchant=two_shops["other"], announcement="Restocked <b>Fridays</b>\nthanks")
    page = client.get(f"/s/{two_shops['other'].slug}/").content.decode()
    assert "Restocked &lt;b&gt;Fridays&lt;/b&gt;<br>thanks" in page and "Shop-wide notice" not in page
    assert 'id="announcement"' not in client.get(f"/s/{merchant.slug}/").content.decode()  # none of its own
    assert "Shop-wide notice" in client.get("/").content.decode()


def test_an_unknown_or_switched_off_merchant_has_no_page(client, two_shops):
    assert client.get("/s/nobody/").status_code == 404
    two_shops["other"].is_active = False
    two_shops["other"].save()
    assert client.get(f"/s/{two_shops['other'].slug}/").status_code == 404


def test_the_product_page_links_to_its_merchants_page(client, two_shops):
    product = two_shops["theirs"][0]
    page = client.get(f"/p/{product.slug}/").content.decode()
    assert f'Sold by <a href="/s/{two_shops["other"].slug}/">Pixel Presets</a>' in page
