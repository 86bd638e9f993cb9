"""A notify that lands before our create call returns wins; the late create response never undoes it."""

import pytest

from cardshop.models import Order, OrderState
from cardshop.services.checkout import order_create, order_payment_start
from cardshop.services.orders import payment_notification_handle
from payments.channels.epay.adapter import EpayAdapter
from payments.models import Payment, PaymentStatus

pytestmark = pytest.mark.django_db


def test_notify_before_create_response(product, epay_account, epay_sim, settings, monkeypatch):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    real_create = EpayAdapter.create

    def create_then_buyer_pays_at_once(self, order):
        created = real_create(self, order)
        params = epay_sim.notify_params(created.provider_trade_no)
        outcome = payment_notification_handle(channel_code="epay", params={k: [v] for k, v in params.items()}, body=b"")
        assert outcome.newly_succeeded
        return created

    monkeypatch.setattr(EpayAdapter, "create", create_then_buyer_pays_at_once)
    order = order_create(
        product_id=product.pk, quantity=1, email="a@example.com", query_password="secret1", buyer_ip=None
    )
    view = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    assert view.status == PaymentStatus.SUCCEEDED
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert Order.objects.get().state == OrderState.DELIVERED
