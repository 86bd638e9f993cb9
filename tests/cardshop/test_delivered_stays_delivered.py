"""Issue 9 point 6: the kind and text a buyer received are frozen on the order at delivery; editing,
rotating or re-typing the product later never changes what past buyers see."""

import pytest
from django.db import connection

from cardshop.models import DeliveryKind, Order, OrderState
from cardshop.services.checkout import order_payment_start
from cardshop.services.delivery import order_secrets_for_buyer
from cardshop.services.notifications import order_link
from cardshop.services.orders import order_fulfil_manual
from tests.cardshop.helpers import buy, signed_notify
from tests.conftest import make_product

pytestmark = pytest.mark.django_db

OLD = "https://dl.example/pack?k=old"
NEW = "https://dl.example/pack?k=rotated"


@pytest.fixture(autouse=True)
def _no_callbacks(settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"


def pay(client, epay_sim, order, capture) -> Order:
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with capture(execute=True):
        assert client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no)).content == b"success"
    order.refresh_from_db()
    return order


def order_page(client, order) -> str:
    """The buyer's order page, opened through the mailed link as the buyer would."""
    resp = client.get(order_link(order.order_no).split("http://127.0.0.1:9", 1)[1], follow=True)
    assert resp.status_code == 200
    return resp.content.decode()


def test_rotating_a_reusable_secret_leaves_past_orders_with_the_old_one(
    client, merchant, epay_account, epay_sim, django_capture_on_commit_callbacks
):
    product = make_product(merchant, secrets_count=0, kind=DeliveryKind.REUSABLE, reusable_secret=OLD)
    old_order = pay(client, epay_sim, buy(product, email="early@example.com"), django_capture_on_commit_callbacks)
    assert old_order.state == OrderState.DELIVERED

    product.reusable_secret = NEW
    product.save()
    new_order = pay(client, epay_sim, buy(product, email="late@example.com"), django_capture_on_commit_callbacks)

    old_order.refresh_from_db()
    assert old_order.delivered_kind == DeliveryKind.REUSABLE
    assert order_secrets_for_buyer(order=old_order) == [OLD]
    assert order_secrets_for_buyer(order=new_order) == [NEW]
    page = order_page(client, old_order)
    assert OLD in page
    assert NEW not in page


def test_retyping_a_reusable_product_to_manual_keeps_what_was_delivered(
    client, merchant, epay_account, epay_sim, django_capture_on_commit_callbacks
):
    product = make_product(merchant, secrets_count=0, kind=DeliveryKind.REUSABLE, reusable_secret=OLD)
    order = pay(client, epay_sim, buy(product), django_capture_on_commit_callbacks)

    product.delivery_kind = DeliveryKind.MANUAL
    product.reusable_secret = ""
    product.save()

    order.refresh_from_db()
    assert order_secrets_for_buyer(order=order) == [OLD]
    assert OLD in order_page(client, order)


def test_retyping_a_manual_product_to_reusable_never_shows_its_secret_to_past_buyers(
    client, merchant, epay_account, epay_sim, django_capture_on_commit_callbacks
):
    product = make_product(merchant, secrets_count=0, kind=DeliveryKind.MANUAL, custom_fields=[])
    order = pay(client, epay_sim, buy(product), django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        order_fulfil_manual(order_no=order.order_no, note="Topped up 500 gems", actor="operator")

    product.delivery_kind = DeliveryKind.REUSABLE
    product.reusable_secret = NEW
    product.save()

    order.refresh_from_db()
    assert order.delivered_kind == DeliveryKind.MANUAL
    assert order_secrets_for_buyer(order=order) == ["Topped up 500 gems"]
    page = order_page(client, order)
    assert "Topped up 500 gems" in page
    assert NEW not in page


def test_the_frozen_reusable_secret_is_encrypted_at_rest(
    client, merchant, epay_account, epay_sim, django_capture_on_commit_callbacks
):
    product = make_product(merchant, secrets_count=0, kind=DeliveryKind.REUSABLE, reusable_secret=OLD)
    order = pay(client, epay_sim, buy(product), django_capture_on_commit_callbacks)
    with connection.cursor() as cur:
        cur.execute("SELECT delivered_text FROM cardshop_order WHERE id = %s", [order.pk])
        (raw,) = cur.fetchone()
    assert raw.startswith("v1:")
    assert OLD not in raw


def test_unique_orders_record_their_kind(client, product, epay_account, epay_sim, django_capture_on_commit_callbacks):
    order = pay(client, epay_sim, buy(product, qty=2), django_capture_on_commit_callbacks)
    product.delivery_kind = DeliveryKind.REUSABLE
    product.reusable_secret = NEW
    product.save()
    order.refresh_from_db()
    assert order.delivered_kind == DeliveryKind.UNIQUE
    shown = order_secrets_for_buyer(order=order)
    assert len(shown) == 2
    assert NEW not in shown


def test_the_migration_freezes_orders_delivered_before_it(
    client, merchant, epay_account, epay_sim, django_capture_on_commit_callbacks
):
    import importlib

    from django.apps import apps

    backfill = importlib.import_module("cardshop.migrations.0004_storefront_delivered_frozen").backfill_delivered
    product = make_product(merchant, secrets_count=0, kind=DeliveryKind.REUSABLE, reusable_secret=OLD)
    order = pay(client, epay_sim, buy(product), django_capture_on_commit_callbacks)
    Order.objects.filter(pk=order.pk).update(delivered_kind="", delivered_text="")  # as a pre-migration row
    pending = buy(product, email="pending@example.com")

    backfill(apps, None)

    order.refresh_from_db()
    pending.refresh_from_db()
    assert (order.delivered_kind, order.delivered_text) == (DeliveryKind.REUSABLE, OLD)
    assert (pending.delivered_kind, pending.delivered_text) == ("", "")
