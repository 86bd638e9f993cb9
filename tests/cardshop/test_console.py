"""The merchant console at /merchant/ (issue 14): a merchant's users log in with a password and the second factor
staff use, see only their merchant's money, orders and payouts, and manage their API keys, webhooks and alerts
through the same services as the API; another merchant's objects are not found."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from cardshop.models import ApiKey, Coupon, MerchantAlertSettings, MerchantMember, WebhookEndpoint
from cardshop.services.merchant_api import api_key_authenticate, api_key_create
from tests.cardshop.api.conftest import money_for
from tests.conftest import make_product
from tests.factories.cardshop import OrderFactory
from tests.factories.core import MerchantFactory
from tests.operators.auth import staff_user

pytestmark = pytest.mark.django_db

PASSWORD = "shop-pass-123456"


@pytest.fixture(autouse=True)
def fast_and_fresh(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]
    settings.CARDSHOP_ADMIN_OTP_REQUIRED = True
    settings.CARDSHOP_WEBHOOKS_ALLOW_PRIVATE = False
    cache.clear()
    yield
    cache.clear()


def member_of(merchant, username="owner"):
    user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD)
    MerchantMember.objects.create(user=user, merchant=merchant)
    return user, TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def login(client, user, device, password=PASSWORD):
    return client.post(
        "/merchant/login/", {"username": user.username, "password": password, "otp_token": code(device), "next": ""}
    )


@pytest.fixture
def owner(client, merchant):
    user, device = member_of(merchant)
    assert login(client, user, device).status_code == 302
    return client


def test_the_console_needs_a_login_with_the_second_factor(client, merchant):
    member_of(merchant)
    assert client.get("/merchant/orders/")["Location"] == "/merchant/login/?next=%2Fmerchant%2Forders%2F"
    refused = client.post("/merchant/login/", {"username": "owner", "password": PASSWORD, "otp_token": "000000"})
    assert refused.status_code == 200 and "valid code" in refused.content.decode()
    assert client.get("/merchant/orders/").status_code == 302  # still out
    # (The wrong code throttles that device for a while, as for staff: the next login is another member's.)
    user, device = member_of(merchant, username="clerk")
    answer = client.post(
        "/merchant/login/",
        {"username": "clerk", "password": PASSWORD, "otp_token": code(device), "next": "/merchant/orders/"},
    )
    assert answer["Location"] == "/merchant/orders/"
    assert client.get("/merchant/orders/").status_code == 200


def test_a_login_may_not_be_sent_elsewhere(client, merchant):
    user, device = member_of(merchant)
    answer = client.post(
        "/merchant/login/",
        {"username": "owner", "password": PASSWORD, "otp_token": code(device), "next": "https://evil.example/"},
    )
    assert answer["Location"] == "/merchant/"


def test_staff_and_members_of_a_switched_off_merchant_get_no_console(client, merchant):
    staff = staff_user("op")
    TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    device = TOTPDevice.objects.get(user=staff)
    refused = client.post(
        "/merchant/login/", {"username": "op", "password": "op-pass-123456", "otp_token": code(device)}
    )
    assert refused.status_code == 200 and "no merchant console" in refused.content.decode()
    user, device = member_of(merchant)
    merchant.is_active = False
    merchant.save()
    assert login(client, user, device).status_code == 200  # refused with the form again


def test_the_overview_shows_the_merchants_money_and_orders_only(owner, merchant, epay_account):
    money_for(merchant, epay_account)  # a sale of 9.99, 9.39 of it paid out
    mine = OrderFactory(product=make_product(merchant, slug="mine"))
    theirs = OrderFactory(product=make_product(MerchantFactory(), slug="theirs"))
    answer = owner.get("/merchant/")
    assert "no-store" in answer["Cache-Control"] and "private" in answer["Cache-Control"]  # never cached
    page = answer.content.decode()
    assert 'id="balance-CNY"' in page and "¥0.00" in page
    assert mine.order_no in page and theirs.order_no not in page
    payouts = owner.get("/merchant/payouts/").content.decode()
    assert "¥9.39" in payouts and "paid" in payouts
    orders = owner.get("/merchant/orders/", {"state": "pending"}).content.decode()
    assert mine.order_no in orders and theirs.order_no not in orders


def test_orders_are_paged_newest_first(owner, merchant):
    product = make_product(merchant, slug="many")
    made = [OrderFactory(product=product).order_no for _ in range(55)]
    first = owner.get("/merchant/orders/").content.decode()
    shown = re.findall(r'<tr id="order-(\w+)">', first)
    assert shown == made[::-1][:50]
    older = re.search(r'id="older" href="\?before=(\d+)"', first).group(1)
    rest = re.findall(r'<tr id="order-(\w+)">', owner.get("/merchant/orders/", {"before": older}).content.decode())
    assert rest == made[::-1][50:]


def test_a_key_made_in_the_console_is_shown_once_and_works(owner, merchant):
    made = owner.post("/merchant/keys/", {"name": "my site", "mode": "live", "scopes": ["read", "write"]})
    page = made.content.decode()
    token = re.search(r'id="new-key-token">(ck_live_\w+)</code>', page).group(1)
    assert "no-store" in made["Cache-Control"]  # the page holds the whole key, this once
    assert "Authorization: Bearer &lt;key&gt;." in page  # shown as text, not swallowed as a tag
    key = ApiKey.objects.get()
    assert key.merchant == merchant and key.scopes == ["read", "write"] and key.created_by == "merchant_user:owner"
    assert api_key_authenticate(token=token).pk == key.pk
    assert token not in owner.get("/merchant/keys/").content.decode()  # never again
    owner.post(f"/merchant/keys/{key.pk}/revoke/")
    assert api_key_authenticate(token=token) is None


def test_another_merchants_key_and_endpoint_are_not_found(owner, merchant):
    other = MerchantFactory()
    theirs = api_key_create(merchant_id=other.pk, name="theirs", scopes=["read"], actor="test").key
    endpoint = WebhookEndpoint.objects.create(merchant=other, url="https://b.example/h", secret="whsec_AAAA")
    assert owner.post(f"/merchant/keys/{theirs.pk}/revoke/").status_code == 404
    assert owner.post(f"/merchant/webhooks/{endpoint.pk}/switch/").status_code == 404
    theirs.refresh_from_db()
    endpoint.refresh_from_db()
    assert theirs.revoked_at is None and endpoint.is_active
    assert "theirs" not in owner.get("/merchant/keys/").content.decode()


def test_webhook_endpoints_are_made_with_their_secret_once_and_private_urls_refused(owner, merchant):
    refused = owner.post("/merchant/webhooks/", {"url": "http://127.0.0.1:8000/hook"})
    assert refused.status_code == 200 and "public address" in refused.content.decode()
    assert not WebhookEndpoint.objects.exists()
    made = owner.post("/merchant/webhooks/", {"url": "https://93.184.215.14/hook", "event_types": ["order.paid"]})
    secret = re.search(r'id="new-endpoint-secret">(whsec_[^<]+)</code>', made.content.decode()).group(1)
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret == secret and endpoint.event_types == ["order.paid"]
    owner.post(f"/merchant/webhooks/{endpoint.pk}/switch/")
    endpoint.refresh_from_db()
    assert not endpoint.is_active


def test_alert_settings_are_saved_and_the_token_stays_write_only(owner, merchant):
    token = "123456789:" + "A" * 35
    form = {"email": "me@shop.example", "email_on_sale": "on", "telegram_bot_token": token, "telegram_chat_id": "42"}
    assert owner.post("/merchant/alerts/", form).status_code == 302
    chosen = MerchantAlertSettings.objects.get(merchant=merchant)
    assert chosen.telegram_bot_token == token and chosen.email_on_sale and not chosen.email_on_refund
    assert token not in owner.get("/merchant/alerts/").content.decode()
    assert owner.post("/merchant/alerts/", {**form, "telegram_bot_token": ""}).status_code == 302
    chosen.refresh_from_db()
    assert chosen.telegram_bot_token == token  # empty kept it
    bad = owner.post("/merchant/alerts/", {**form, "telegram_chat_id": "not a chat"})
    assert bad.status_code == 200 and "chat id" in bad.content.decode()


def test_coupons_are_made_and_switched_off_in_the_console(owner, merchant):
    product = make_product(merchant, slug="cards", secrets_count=0)
    theirs = make_product(MerchantFactory(), slug="theirs", secrets_count=0)
    made = owner.post(
        "/merchant/coupons/",
        {"code": "five", "kind": "fixed", "amount_off": "5.00", "currency": "CNY", "product": product.pk},
    )
    assert made.status_code == 302
    coupon = Coupon.objects.get()
    assert (coupon.code, coupon.amount_off_minor, coupon.product, coupon.merchant) == ("FIVE", 500, product, merchant)
    page = owner.get("/merchant/coupons/").content.decode()
    assert 'id="coupon-FIVE"' in page and "¥5.00" in page
    assert str(theirs.pk) not in re.findall(r'<option value="(\d+)"', page)  # only its own products offered
    again = owner.post("/merchant/coupons/", {"code": "FIVE", "kind": "percent", "percent_off": 5, "currency": "CNY"})
    assert again.status_code == 200 and "already have a coupon with this code" in again.content.decode()
    owner.post(f"/merchant/coupons/{coupon.pk}/deactivate/")
    coupon.refresh_from_db()
    assert not coupon.is_active
    other = Coupon.objects.create(merchant=theirs.merchant, code="THEIRS", kind="percent", percent_off=5)
    assert owner.post(f"/merchant/coupons/{other.pk}/deactivate/").status_code == 404
