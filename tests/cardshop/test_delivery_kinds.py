"""Three delivery kinds: unique secrets, one reusable secret, manual fulfilment by an operator."""

import pytest
from django.core import mail

from cardshop.models import CardSecret, OrderState
from cardshop.services.checkout import order_create, order_payment_start
from cardshop.services.delivery import order_secrets_for_buyer
from cardshop.services.orders import order_fulfil_manual
from core.errors import DomainError
from tests.cardshop.helpers import buy, signed_notify
from tests.conftest import make_product

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_callbacks(settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"


def pay(client, epay_sim, order, capture):
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    params = signed_notify(epay_sim, payment.out_trade_no)
    with capture(execute=True):
        assert client.get("/notify/epay/", params).content == b"success"
    order.refresh_from_db()
    return order


def test_reusable_secret_goes_to_every_buyer(
    client, merchant, epay_account, epay_sim, django_capture_on_commit_callbacks
):
    product = make_product(merchant, secrets_count=0, kind="reusable", reusable_secret="https://dl.example/pack?k=1")
    orders = [
        order_create(
            product_id=product.pk,
            quantity=1,
            email=f"b{i}@example.com",
            query_password="secret1",
            buyer_ip=f"10.0.0.{i}",
        )
        for i in range(2)
    ]
    for o in orders:
        o = pay(client, epay_sim, o, django_capture_on_commit_callbacks)
        assert o.state == OrderState.DELIVERED
        assert order_secrets_for_buyer(order=o) == ["https://dl.example/pack?k=1"]
    assert CardSecret.objects.count() == 0
    assert len(mail.outbox) == 2


def test_manual_order_waits_in_paid_until_the_operator_fulfils(
    client, merchant, epay_account, epay_sim, django_capture_on_commit_callbacks
):
    product = make_product(
        merchant,
        secrets_count=0,
        kind="manual",
        custom_fields=[{"name": "account", "label": "Game account", "required": True}],
    )
    with pytest.raises(DomainError) as exc:
        order_create(product_id=product.pk, quantity=1, email="m@example.com", query_password="secret1", buyer_ip=None)
    assert exc.value.code == "custom_field"
    order = buy(product, email="m@example.com", ip=None, custom_input={"account": "player-77", "ignored": "x"})
    assert order.custom_input == {"account": "player-77"}
    order = pay(client, epay_sim, order, django_capture_on_commit_callbacks)
    assert order.state == OrderState.PAID
    assert order_secrets_for_buyer(order=order) == []
    assert len(mail.outbox) == 0
    with django_capture_on_commit_callbacks(execute=True):
        order_fulfil_manual(order_no=order.order_no, note="Topped up 500 gems", actor="operator")
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    assert order_secrets_for_buyer(order=order) == ["Topped up 500 gems"]
    assert len(mail.outbox) == 1
    with pytest.raises(DomainError):
        order_fulfil_manual(order_no=order.order_no, note="again", actor="operator")


def test_a_lost_mail_task_is_made_up_by_the_sweep_once(client, product, epay_account, epay_sim):
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    from cardshop.tasks import order_delivery_emails_resend_missed_task

    order = order_create(
        product_id=product.pk, quantity=1, email="lost@example.com", query_password="secret1", buyer_ip=None
    )
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    params = signed_notify(epay_sim, payment.out_trade_no)
    assert client.get("/notify/epay/", params).content == b"success"  # on-commit task never ran: mail lost
    assert len(mail.outbox) == 0
    assert order_delivery_emails_resend_missed_task.delay().get() == 0  # too recent: the task may still come
    with time_machine.travel(timezone.now() + timedelta(minutes=6), tick=False):
        assert order_delivery_emails_resend_missed_task.delay().get() == 1
        assert order_delivery_emails_resend_missed_task.delay().get() == 0
    assert [m.to for m in mail.outbox] == [["lost@example.com"]]
