"""Back office: bulk import from the admin, masked secrets, audited reveal, write-only channel keys."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from cardshop.models import CardSecret, SecretRevealLog
from tests.cardshop.helpers import buy, signed_notify
from tests.conftest import make_product
from tests.operators.auth import operator_login

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    return operator_login(client, get_user_model().objects.create_superuser("op", "op@example.com", "op-pass-123456"))


def test_bulk_import_by_paste_and_file_reports_counts(operator_client, merchant):
    product = make_product(merchant, secrets_count=0)
    url = f"/admin/cardshop/product/{product.pk}/import/"
    upload = SimpleUploadedFile("codes.txt", b"F-1\nF-2\nP-1\n")
    resp = operator_client.post(url, {"text": "P-1\nP-2\nP-2\n", "file": upload}, follow=True)
    page = resp.content.decode()
    assert "Imported 4, duplicates skipped 2 (0 held by another product), invalid 0." in page
    assert "The file was read as utf-8." in page
    assert CardSecret.objects.filter(product=product).count() == 4


def test_a_gbk_upload_is_read_as_gb18030_through_the_admin(operator_client, merchant):
    product = make_product(merchant, secrets_count=0)
    upload = SimpleUploadedFile("codes.txt", "充值卡-一号\n充值卡-二号\n".encode("gbk"))
    resp = operator_client.post(f"/admin/cardshop/product/{product.pk}/import/", {"file": upload}, follow=True)
    assert "The file was read as gb18030." in resp.content.decode()
    assert sorted(s.secret for s in CardSecret.objects.filter(product=product)) == ["充值卡-一号", "充值卡-二号"]


def test_secret_lists_are_masked_and_reveal_is_audited(operator_client, merchant):
    product = make_product(merchant, secrets_count=2)
    secret = CardSecret.objects.filter(product=product).first()
    listing = operator_client.get("/admin/cardshop/cardsecret/").content.decode()
    detail = operator_client.get(f"/admin/cardshop/cardsecret/{secret.pk}/change/").content.decode()
    for page in (listing, detail):
        assert secret.secret not in page
    reveal_url = f"/admin/cardshop/cardsecret/{secret.pk}/reveal/"
    assert secret.secret not in operator_client.get(reveal_url).content.decode()
    assert SecretRevealLog.objects.count() == 0
    shown = operator_client.post(reveal_url, {"reason": "buyer says code invalid"}).content.decode()
    assert secret.secret in shown
    log = SecretRevealLog.objects.get()
    assert (log.user, log.secret_id, log.reason) == (operator_client.user, secret.pk, "buyer says code invalid")


def test_channel_credentials_are_write_only(operator_client, epay_account):
    key = epay_account.credentials_dict()["key"]
    listing = operator_client.get("/admin/payments/channelaccount/").content.decode()
    form = operator_client.get(f"/admin/payments/channelaccount/{epay_account.pk}/change/").content.decode()
    assert key not in listing and key not in form
    assert "key=********" + key[-4:] in listing
    data = {
        "code": "epay",
        "name": "renamed",
        "merchant_no": epay_account.merchant_no,
        "base_url": epay_account.base_url,
        "currency": "CNY",
        "credentials": "",
        "enabled": "on",
        "priority": 100,
        "fee_rate_bp": 60,
        "fee_fixed_minor": 0,
    }
    operator_client.post(f"/admin/payments/channelaccount/{epay_account.pk}/change/", data)
    epay_account.refresh_from_db()
    assert epay_account.name == "renamed"
    assert epay_account.credentials_dict() == {"key": key}  # empty field keeps the stored key
    data["credentials"] = json.dumps({"key": ""})
    resp = operator_client.post(f"/admin/payments/channelaccount/{epay_account.pk}/change/", data)
    assert resp.status_code == 200  # refused: an empty key would make notifies forgeable
    epay_account.refresh_from_db()
    assert epay_account.credentials_dict() == {"key": key}


def test_orders_cannot_be_deleted_from_the_admin(operator_client, product):
    from cardshop.services.checkout import order_create

    order = order_create(
        product_id=product.pk, quantity=1, email="a@example.com", query_password="secret1", buyer_ip=None
    )
    page = operator_client.get(f"/admin/cardshop/order/{order.pk}/change/").content.decode()
    assert order.order_no in page and "a@example.com" not in page  # email is masked
    assert operator_client.get(f"/admin/cardshop/order/{order.pk}/delete/").status_code == 403


def test_operator_fulfils_a_manual_order_from_the_admin(operator_client, merchant, epay_account, epay_sim, settings):
    from cardshop.models import Order, OrderState
    from cardshop.services.checkout import order_payment_start
    from cardshop.services.delivery import order_secrets_for_buyer

    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    product = make_product(
        merchant, secrets_count=0, kind="manual", custom_fields=[{"name": "account", "required": True}]
    )
    order = buy(product, email="m@example.com", ip=None, custom_input={"account": "player-1"})
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    operator_client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no))
    page = operator_client.get(f"/admin/cardshop/order/{order.pk}/change/").content.decode()
    assert f"/admin/cardshop/order/{order.pk}/fulfil/" in page
    form = operator_client.get(f"/admin/cardshop/order/{order.pk}/fulfil/").content.decode()
    assert "player-1" in form
    operator_client.post(f"/admin/cardshop/order/{order.pk}/fulfil/", {"note": "500 gems sent"})
    order = Order.objects.get(pk=order.pk)
    assert order.state == OrderState.DELIVERED
    assert order_secrets_for_buyer(order=order) == ["500 gems sent"]
    assert order.events.get(kind="delivered").actor == "op"


def test_operator_retries_an_undeliverable_order_after_restocking(
    operator_client, merchant, epay_account, epay_sim, settings
):
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    from cardshop.models import Order, OrderState
    from cardshop.services.checkout import order_create, order_payment_start
    from cardshop.services.orders import orders_expire_due
    from cardshop.services.stock import card_secrets_import

    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    product = make_product(merchant, secrets_count=1)
    order = order_create(
        product_id=product.pk, quantity=1, email="u@example.com", query_password="secret1", buyer_ip=None
    )
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with time_machine.travel(timezone.now() + timedelta(minutes=20), tick=False):
        orders_expire_due()
        order_create(product_id=product.pk, quantity=1, email="v@example.com", query_password="secret1", buyer_ip=None)
        operator_client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no))
    assert Order.objects.get(pk=order.pk).state == OrderState.UNDELIVERABLE
    action = {"action": "retry_delivery", "_selected_action": [order.pk]}
    assert (
        "still short of stock" in operator_client.post("/admin/cardshop/order/", action, follow=True).content.decode()
    )
    card_secrets_import(product_id=product.pk, text="RESTOCKED-1")
    assert "delivered" in operator_client.post("/admin/cardshop/order/", action, follow=True).content.decode()
    order = Order.objects.get(pk=order.pk)
    assert order.state == OrderState.DELIVERED
    assert order.secrets.get().secret == "RESTOCKED-1"
