"""Issue 14, proof 6, in a real browser: a merchant logs in to its console with its password and authenticator code,
makes an API key, and sees the order its own code placed through the API with that key."""

from __future__ import annotations

import re

import pytest
import requests
from django.contrib.auth import get_user_model
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from cardshop.models import MerchantMember, Order

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "shop-pass-123456"


def test_a_merchant_makes_a_key_and_sees_the_order_it_placed_through_the_api(
    page, public_url, settings, merchant, product, artifacts_dir
):
    settings.CARDSHOP_ADMIN_OTP_REQUIRED = True
    settings.CARDSHOP_API_RATE = "1000/s"
    user = get_user_model().objects.create_user("owner", "owner@example.com", PASSWORD)
    MerchantMember.objects.create(user=user, merchant=merchant)
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)

    page.goto(public_url + "/merchant/keys/")  # not logged in: the console's login, back here after it
    expect(page).to_have_url(re.compile(r"/merchant/login/\?next="))
    page.fill("#id_username", "owner")
    page.fill("#id_password", PASSWORD)
    page.fill("#id_otp_token", f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}")
    page.click("#login")
    expect(page).to_have_url(public_url + "/merchant/keys/")
    expect(page.locator("#console-merchant")).to_have_text(merchant.name)

    page.fill("#id_name", "my site")
    page.check("input[name=scopes][value=read]")
    page.check("input[name=scopes][value=write]")
    page.click("#make-key")
    token = page.locator("#new-key-token").inner_text().strip()
    assert token.startswith("ck_live_")
    page.screenshot(path=str(artifacts_dir / "console-new-key.png"), full_page=True)

    # The merchant's own site places an order for its buyer with the new key.
    made = requests.post(
        public_url + "/api/v1/orders/",
        json={"product": product.pk, "email": "buyer@example.com"},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "first-order"},
        timeout=10,
    )
    assert made.status_code == 201, made.text
    order_no = made.json()["id"]

    page.click("#nav-orders")
    row = page.locator(f"#order-{order_no}")
    expect(row).to_be_visible()
    expect(row).to_contain_text(product.name)
    expect(row).to_contain_text("buyer@example.com")
    assert Order.objects.get(order_no=order_no).merchant_id == merchant.pk
    page.screenshot(path=str(artifacts_dir / "console-orders.png"), full_page=True)
