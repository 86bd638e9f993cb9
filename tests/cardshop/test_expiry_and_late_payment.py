"""Proof 4: expiry with time moved (not slept); a late payment is delivered or marked undeliverable, never lost."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from cardshop.models import CardSecret, Order, OrderState, SecretStatus
from cardshop.selectors import product_stock
from cardshop.services.checkout import order_payment_start
from cardshop.services.orders import order_cancel, orders_expire_due
from cardshop.tasks import orders_expire_due_task
from tests.cardshop.helpers import buy, signed_notify
from tests.conftest import make_product

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_callbacks(settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"


def test_expired_reservation_counts_as_free_before_the_task_runs(product):
    order = buy(product, qty=2)
    assert product_stock(product) == 3
    with time_machine.travel(order.expires_at + timedelta(seconds=1), tick=False):
        assert product_stock(product) == 5  # read treats the lapsed reservation as free
        other = buy(product, qty=5, email="b@example.com", ip="10.0.0.2")  # and checkout can take it
        assert CardSecret.objects.filter(order=other).count() == 5


def test_beat_task_expires_due_orders_and_releases_stock(product):
    order = buy(product, qty=2)
    assert orders_expire_due() == 0  # not due yet
    with time_machine.travel(timezone.now() + timedelta(minutes=16), tick=False):
        assert orders_expire_due_task.delay().get() == 1
        assert orders_expire_due() == 0  # idempotent
    order.refresh_from_db()
    assert order.state == OrderState.EXPIRED
    assert CardSecret.objects.filter(order=order).count() == 0
    assert CardSecret.objects.filter(status=SecretStatus.AVAILABLE).count() == 5
    assert list(order.events.values_list("kind", flat=True)) == ["created", "expired"]


def _pay(client, epay_sim, out_trade_no):
    params = signed_notify(epay_sim, out_trade_no)
    return client.get("/notify/epay/", params)


def test_late_payment_is_delivered_when_stock_allows(client, product, epay_account, epay_sim):
    order = buy(product, qty=2)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with time_machine.travel(timezone.now() + timedelta(minutes=20), tick=False):
        orders_expire_due()
        assert _pay(client, epay_sim, payment.out_trade_no).content == b"success"
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    assert CardSecret.objects.filter(order=order, status=SecretStatus.SOLD).count() == 2
    assert [e.kind for e in order.events.all()] == ["created", "expired", "paid", "delivered"]
    assert order.events.get(kind="paid").detail["late"] is True


def test_late_payment_without_stock_is_kept_for_an_operator(client, merchant, epay_account, epay_sim):
    product = make_product(merchant, secrets_count=1)
    order = buy(product)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with time_machine.travel(timezone.now() + timedelta(minutes=20), tick=False):
        orders_expire_due()
        buy(product, email="fast@example.com", ip="10.0.0.5")  # someone else takes the last secret
        resp = _pay(client, epay_sim, payment.out_trade_no)
    assert resp.content == b"success"  # the money is recorded, so the provider must stop retrying
    order.refresh_from_db()
    assert order.state == OrderState.UNDELIVERABLE
    assert order.paid_at is not None
    assert CardSecret.objects.filter(order=order).count() == 0
    assert order.events.filter(kind="undeliverable").exists()


def test_payment_for_a_cancelled_order_is_honoured(client, product, epay_account, epay_sim):
    order = buy(product)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    order_cancel(order_no=order.order_no)
    assert CardSecret.objects.filter(order=order).count() == 0
    assert _pay(client, epay_sim, payment.out_trade_no).content == b"success"
    assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED
