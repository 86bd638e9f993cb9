"""Issue 9 point 5: a second payment for an order already paid is never stranded: it is refunded through its
own channel (or held for an operator, who finds it by a filter), and a success under another trade number is
a separate payment that never overwrites ours."""

import pytest

from cardshop.models import Order, OrderState
from cardshop.services.checkout import order_payment_start
from payments import facade
from payments.models import Payment, PaymentStatus, Refund, RefundStatus, RoutingSettings
from tests.cardshop.helpers import buy, signed_notify

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_callbacks(settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"


def _two_paid_payments(client, product, epay_sim):
    """The buyer paid a QR we had already closed (its close raced the payment), and the new one too."""
    order = buy(product)
    first = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    Payment.objects.filter(out_trade_no=first.out_trade_no).update(status=PaymentStatus.CLOSED, next_query_at=None)
    second = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    assert second.out_trade_no != first.out_trade_no
    for payment in (second, first):
        _paid_at_provider(epay_sim, payment.out_trade_no)
        assert client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no)).content == b"success"
    return order, first, second


def _paid_at_provider(epay_sim, out_trade_no: str) -> None:
    """The buyer pays at the simulator; its own callback is lost, the test delivers it instead."""
    epay_sim.faults.drop_notify = 1
    epay_sim.pay(out_trade_no)


def test_a_second_payment_is_refunded_through_its_own_channel(
    client, product, epay_account, epay_sim, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        order, first, second = _two_paid_payments(client, product, epay_sim)
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED and order.paid_by == second.out_trade_no
    refund = Refund.objects.get()
    assert refund.payment.out_trade_no == first.out_trade_no and refund.status == RefundStatus.SUCCEEDED
    assert Payment.objects.get(out_trade_no=first.out_trade_no).status == PaymentStatus.REFUNDED
    assert Payment.objects.get(out_trade_no=second.out_trade_no).status == PaymentStatus.SUCCEEDED
    assert epay_sim.trade_for(first.out_trade_no)["status"] != 1  # returned at the provider
    kinds = list(order.events.values_list("kind", flat=True))
    assert kinds.count("delivered") == 1
    assert "extra_payment" in kinds and "extra_payment_refund_succeeded" in kinds
    assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED  # the buyer keeps what they bought


def test_an_operator_setting_holds_a_second_payment_and_the_filter_finds_it(
    client, product, epay_account, epay_sim, django_capture_on_commit_callbacks
):
    RoutingSettings.objects.create(extra_payments_auto_refund=False)
    with django_capture_on_commit_callbacks(execute=True):
        order, first, second = _two_paid_payments(client, product, epay_sim)
    assert not Refund.objects.exists()
    assert Payment.objects.filter(reference=order.order_no, status=PaymentStatus.SUCCEEDED).count() == 2
    assert order.events.get(kind="extra_payment").detail["held"] is True
    assert list(facade.references_paid_more_than_once()) == [order.order_no]


def test_a_success_under_another_trade_number_is_a_separate_payment(client, product, epay_account, epay_sim):
    RoutingSettings.objects.create(extra_payments_auto_refund=False)
    order = buy(product)
    shown = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    ours = Payment.objects.get()
    assert ours.provider_trade_no  # epay's mapi gives its trade number at create
    other = {k: v for k, v in signed_notify(epay_sim, shown.out_trade_no).items() if k not in ("sign", "sign_type")}
    other["trade_no"] = "99990001"  # the provider's retry booked it under a new trade number, signed
    other.update(sign=epay_sim.sign(other, epay_account.credentials_dict()["key"]), sign_type="MD5")
    assert client.get("/notify/epay/", other).content == b"success"
    ours.refresh_from_db()
    assert ours.status == PaymentStatus.PENDING and ours.provider_trade_no != "99990001"  # never overwritten
    sibling = Payment.objects.get(provider_trade_no="99990001")
    assert sibling.status == PaymentStatus.SUCCEEDED and sibling.collected_on == ours
    assert sibling.reference == order.order_no and sibling.amount == ours.amount
    assert Order.objects.get(pk=order.pk).state == OrderState.DELIVERED
    # A replay of that callback is one collection still; our own trade paying later is the second payment.
    assert client.get("/notify/epay/", other).content == b"success"
    assert client.get("/notify/epay/", signed_notify(epay_sim, shown.out_trade_no)).content == b"success"
    assert Payment.objects.filter(reference=order.order_no, status=PaymentStatus.SUCCEEDED).count() == 2
    assert list(facade.references_paid_more_than_once()) == [order.order_no]


def test_operators_see_every_payment_of_the_order_and_filter_paid_more_than_once(
    client, product, epay_account, epay_sim, django_capture_on_commit_callbacks
):
    from django.contrib.auth import get_user_model

    from tests.operators.auth import operator_login

    RoutingSettings.objects.create(extra_payments_auto_refund=False)
    with django_capture_on_commit_callbacks(execute=True):
        order, first, second = _two_paid_payments(client, product, epay_sim)
    once = buy(product, email="b@example.com", ip="10.0.0.2")
    operator_login(client, get_user_model().objects.create_superuser("op", "op@example.com", "op-pass-123456"))
    page = client.get(f"/admin/cardshop/order/{order.pk}/change/").content.decode()
    assert first.out_trade_no in page and second.out_trade_no in page
    assert page.count("succeeded") >= 2 and "pays this order" in page
    listing = client.get("/admin/cardshop/order/?paid_more_than_once=yes").content.decode()
    assert order.order_no in listing and once.order_no not in listing
    assert once.order_no in client.get("/admin/cardshop/order/").content.decode()
