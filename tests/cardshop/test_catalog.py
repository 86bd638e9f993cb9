"""Issue 10, catalog and product page: categories, search, product images, the announcement, the method picked on
the product page, the running total."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from cardshop.admin import ProductAdminForm
from cardshop.models import Category, Order, ProductImage, ShopAnnouncement
from cardshop.services import images
from core.errors import DomainError
from payments.services import channel_choice
from tests.conftest import make_product

pytestmark = pytest.mark.django_db


def _png(w: int, h: int, colour=(200, 30, 30), mode="RGB", exif: bool = False) -> bytes:
    img = Image.new(mode, (w, h), colour)
    buf = io.BytesIO()
    if exif:
        ex = Image.Exif()
        ex[0x010F] = "SecretCam"  # Make
        img.save(buf, format="JPEG", exif=ex)
    else:
        img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def shelves(merchant, epay_account):
    cards = Category.objects.create(name="Gift cards", slug="gift-cards", sort_order=0)
    keys = Category.objects.create(name="Software", slug="software", sort_order=1)
    hidden = Category.objects.create(name="Hidden", slug="hidden", is_active=False)
    return {
        "steam": make_product(merchant, name="Steam wallet code", category=cards, description="instant"),
        "xbox": make_product(merchant, name="Xbox gift card", category=cards),
        "office": make_product(merchant, name="Office key", category=keys, description="retail STEAM-free licence"),
        "loose": make_product(merchant, name="Loose sticker", category=None),
        "secret": make_product(merchant, name="Hidden steam thing", category=hidden),
    }


def _names(html: str, products) -> set[str]:
    return {k for k, p in products.items() if f'href="/p/{p.slug}/"' in html}


def test_categories_group_and_filter_the_catalog(client, shelves):
    html = client.get("/").content.decode()
    assert _names(html, shelves) == {"steam", "xbox", "office", "loose"}  # uncategorised shown, hidden one not
    assert html.index(">Gift cards</h2>") < html.index(">Software</h2>") < html.index(">Other</h2>")
    assert 'id="category-hidden"' not in html
    only = client.get("/?c=gift-cards").content.decode()
    assert _names(only, shelves) == {"steam", "xbox"}
    assert 'class="tab active" id="category-gift-cards"' in only
    stale = client.get("/?c=no-such-shelf")
    assert stale.status_code == 200 and 'id="no-match"' in stale.content.decode()


def test_search_by_name_or_description_case_insensitive_and_with_a_category(client, shelves):
    found = client.get("/?q=STEAM").content.decode()
    assert _names(found, shelves) == {"steam", "office"}  # the name, and office's description
    assert 'value="STEAM"' in found
    assert _names(client.get("/?q=steam&c=software").content.decode(), shelves) == {"office"}
    none = client.get("/?q=zzz-nothing").content.decode()
    assert 'id="no-match"' in none and "No products match." in none
    assert _names(none, shelves) == set()


def test_prepare_bounds_resizes_and_strips_exif():
    prepared = images.product_image_prepare(data=_png(1600, 1200, exif=True))
    full = Image.open(io.BytesIO(prepared.full_jpeg))
    thumb = Image.open(io.BytesIO(prepared.thumb_jpeg))
    assert (full.format, full.size) == ("JPEG", (800, 600))
    assert (prepared.width, prepared.height) == (800, 600)
    assert (thumb.size, prepared.thumb_size) == ((320, 320), 320)
    assert not full.getexif() and b"SecretCam" not in prepared.full_jpeg
    small = images.product_image_prepare(data=_png(100, 60))
    assert (small.width, small.height, small.thumb_size) == (100, 60, 60)  # never enlarged


def test_prepare_refuses_non_images_and_huge_ones():
    with pytest.raises(DomainError) as exc:
        images.product_image_prepare(data=b"<script>alert(1)</script>")
    assert exc.value.code == "image_invalid"
    with pytest.raises(DomainError) as exc:
        images.product_image_prepare(data=b"\x00" * (images.MAX_UPLOAD_BYTES + 1))
    assert exc.value.code == "image_too_large"
    with pytest.raises(DomainError) as exc:
        images.product_image_prepare(data=_png(8000, 6000, colour=0, mode="L"))  # 48 MP
    assert exc.value.code == "image_too_many_pixels"


def _admin_form(product, upload: bytes | None, **extra):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {
        "merchant": product.merchant_id,
        "name": product.name,
        "slug": product.slug,
        "price_minor": "9.90",
        "currency": "CNY",
        "delivery_kind": product.delivery_kind,
        "custom_fields": "",
        "min_quantity": 1,
        "max_quantity": 5,
        "is_active": "on",
        "sort_order": 0,
        **extra,
    }
    files = {"image": SimpleUploadedFile("p.png", upload, content_type="image/png")} if upload is not None else {}
    return ProductAdminForm(data, files, instance=product)


def test_admin_upload_is_resized_and_served_with_cache_headers(client, product):
    form = _admin_form(product, _png(1000, 1000))
    assert form.is_valid(), form.errors
    form.save()
    stored = ProductImage.objects.get(product=product)
    assert (stored.width, stored.height, stored.thumb_size) == (800, 800, 320)

    resp = client.get(f"/p/{product.slug}/image.jpg")
    assert resp.status_code == 200 and resp["Content-Type"] == "image/jpeg"
    assert "max-age=86400" in resp["Cache-Control"] and "public" in resp["Cache-Control"]
    assert Image.open(io.BytesIO(resp.content)).size == (800, 800)
    assert resp["ETag"] == f'"{stored.digest}"'
    assert client.get(f"/p/{product.slug}/image.jpg", HTTP_IF_NONE_MATCH=resp["ETag"]).status_code == 304
    thumb = client.get(f"/p/{product.slug}/thumb.jpg")
    assert thumb["Content-Type"] == "image/jpeg" and Image.open(io.BytesIO(thumb.content)).size == (320, 320)

    page = client.get(f"/p/{product.slug}/").content.decode()
    assert f'src="/p/{product.slug}/image.jpg?v={stored.version}" width="800" height="800" alt="{product.name}"' in page
    catalog = client.get("/").content.decode()
    assert f'src="/p/{product.slug}/thumb.jpg?v={stored.version}" width="320" height="320"' in catalog

    removed = _admin_form(product, None, image_remove="on")
    assert removed.is_valid(), removed.errors
    removed.save()
    assert not ProductImage.objects.exists()
    assert client.get(f"/p/{product.slug}/image.jpg").status_code == 404


def test_admin_refuses_a_non_image_with_a_clear_error_and_stores_nothing(product):
    form = _admin_form(product, b"GIF89a not really")
    assert not form.is_valid()
    assert form.errors["image"] == ["This file is not an image we can read (use JPEG, PNG, GIF or WebP)."]
    assert not ProductImage.objects.exists()


def test_no_image_draws_a_placeholder_not_a_broken_img(client, product):
    for url in ("/", f"/p/{product.slug}/"):
        html = client.get(url).content.decode()
        assert 'class="thumb placeholder"' in html or 'class="picture placeholder"' in html
        assert "image.jpg" not in html and "thumb.jpg" not in html
    assert client.get(f"/p/{product.slug}/thumb.jpg").status_code == 404


def test_announcement_is_shown_escaped_on_catalog_and_product_page(client, product):
    ShopAnnouncement.objects.create(text="Sale <b>today</b>\nsecond line", is_active=True)
    for url in ("/", f"/p/{product.slug}/"):
        html = client.get(url).content.decode()
        assert "Sale &lt;b&gt;today&lt;/b&gt;<br>second line" in html
        assert "<b>today</b>" not in html
    ShopAnnouncement.objects.update(is_active=False)
    assert 'id="announcement"' not in client.get("/").content.decode()


def _buy(client, product, **kw):
    return client.post(
        f"/p/{product.slug}/", {"quantity": 1, "email": "m@example.com", "query_password": "secret1", **kw}
    )


def test_product_page_offers_the_routable_methods_as_radios(client, product):
    html = client.get(f"/p/{product.slug}/").content.decode()
    assert 'type="radio" name="method" value="alipay" id="method-alipay">' in html  # epay: two, none preselected
    assert 'type="radio" name="method" value="wxpay" id="method-wxpay">' in html
    assert 'value="card"' not in html and 'value="bank"' not in html


def test_a_single_offered_method_is_preselected(client, product, epay_account, monkeypatch):
    from payments import facade
    from payments.contracts import PaymentOption

    # Routing answers with one method (the storefront reaches it through the facade).
    monkeypatch.setattr(
        facade, "payment_options", lambda **kw: [PaymentOption(method="alipay", channel_codes=("epay",))]
    )
    html = client.get(f"/p/{product.slug}/").content.decode()
    assert 'value="alipay" id="method-alipay" checked>' in html and 'value="wxpay"' not in html


def test_chosen_method_goes_to_the_pay_page(client, product):
    resp = _buy(client, product, method="wxpay")
    order = Order.objects.get()
    assert resp.status_code == 302 and resp["Location"] == f"/orders/{order.order_no}/pay/?method=wxpay"
    assert "Paying with WeChat Pay" in client.get(resp["Location"]).content.decode()


def test_a_method_that_cannot_take_the_amount_is_a_form_error_and_no_order(client, product, epay_account):
    epay_account.max_amount_minor = product.price_minor * 2  # one or two fit, three do not
    epay_account.save()
    channel_choice.cache_clear()
    resp = _buy(client, product, method="alipay", quantity=3)
    assert resp.status_code == 400
    assert "Alipay cannot take an order of ¥29.70 right now; choose another payment method." in resp.content.decode()
    assert not Order.objects.exists()
    unknown = _buy(client, product, method="bitcoin")
    assert unknown.status_code == 400 and "Choose one of the payment methods shown." in unknown.content.decode()
    assert not Order.objects.exists()


def test_running_total_is_on_the_product_page(client, merchant, epay_account):
    product = make_product(merchant, price_minor=990, min_quantity=2, max_quantity=5)
    html = client.get(f"/p/{product.slug}/").content.decode()
    assert 'id="total-amount"' in html and 'data-price-minor="990" data-exponent="2" data-symbol="¥">¥19.80<' in html
    assert 'addEventListener("input", show)' in html
