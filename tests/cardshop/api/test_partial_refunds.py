"""Partial refunds through the API (issue 14): part of a delivered order refunded through WeChat Pay's real v3
adapter against its simulator, then the rest; the order stays delivered until the last refund makes it refunded;
the ledger books each part; more than is left, or part of an epay payment (whole refunds only), is refused."""

from __future__ import annotations

import json

import pytest
from django.core import mail

from cardshop.models import MerchantAlertSettings, Order, OrderState, WebhookEvent
from cardshop.services.checkout import order_payment_start
from cardshop.services.webhooks import webhook_events_publish
from payments.models import ChannelAccount, Payment, PaymentStatus, Refund, RefundStatus
from payments.simulators.wechatpay import WechatPaySimulator
from settlement.models import LedgerTransaction
from tests.cardshop.api.conftest import paid_via_api
from tests.conformance.test_channels import _wait
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db(transaction=True)

ORDERS = "/api/v1/orders/"


def cny(minor: int) -> dict:
    return {"amount_minor": minor, "currency": "CNY"}


@pytest.fixture
def wx(live_server, settings, merchant):
    settings.CARDSHOP_PUBLIC_URL = live_server.url
    sim = WechatPaySimulator().start()  # refunds settle at once (SUCCESS)
    acct = sim.account()
    ChannelAccount.objects.create(
        code="wechatpay",
        name="WeChat Pay",
        merchant_no=acct.merchant_no,
        base_url=acct.base_url,
        currency=acct.currency,
        credentials=json.dumps(acct.credentials),
    )
    FeePlanFactory(merchant=merchant, cycle="T+0", agent_commission_bp=[], reserve_bp=0, reserve_days=0)
    yield sim
    sim.stop()


def delivered_by_wechat(api, sim, product) -> Order:
    made = api.post(ORDERS, {"product": product.pk, "quantity": 2, "email": "b@example.com"}, format="json")
    order = Order.objects.get(order_no=made.json()["id"])
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", channel_code="wechatpay")
    sim.pay(payment.out_trade_no)
    assert _wait(lambda: Order.objects.get(pk=order.pk).state == OrderState.DELIVERED)
    return order


def test_part_then_the_rest_of_an_order_is_refunded(api, wx, shop_a, django_capture_on_commit_callbacks):
    MerchantAlertSettings.objects.create(merchant=shop_a.merchant, email="owner@shop.example")
    order = delivered_by_wechat(api, wx, shop_a)  # 2 x 9.90 = 19.80
    part = api.post(f"{ORDERS}{order.order_no}/refund/", {"amount": cny(500), "reason": "one code bad"}, format="json")
    assert part.status_code == 202, part.json()
    assert part.json()["amount"] == cny(500)
    assert _wait(lambda: Refund.objects.filter(status=RefundStatus.SUCCEEDED).count() == 1)
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED  # part of it: the order stays delivered
    payment = Payment.objects.get(reference=order.order_no)
    assert (payment.status, payment.refunded_minor) == (PaymentStatus.SUCCEEDED, 500)
    assert order.events.filter(kind="partially_refunded").count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        webhook_events_publish()
    event = WebhookEvent.objects.get(type="order.partially_refunded")
    assert event.payload["data"]["refund"]["amount"] == cny(500) and event.payload["data"]["state"] == "delivered"
    assert "Refunded: ¥5.00" in [m.subject for m in mail.outbox]  # the merchant's alert names the part

    too_much = api.post(f"{ORDERS}{order.order_no}/refund/", {"amount": cny(1481)}, format="json")
    assert too_much.status_code == 400 and too_much.json()["error"]["code"] == "refund_too_large"

    rest = api.post(f"{ORDERS}{order.order_no}/refund/", {}, format="json")  # no amount: all that is left
    assert rest.status_code == 202 and rest.json()["amount"] == cny(1480)
    assert _wait(lambda: Order.objects.get(pk=order.pk).state == OrderState.REFUNDED)
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_minor) == (PaymentStatus.REFUNDED, 1980)
    refunds = LedgerTransaction.objects.filter(kind="refund", reference=order.order_no)
    assert refunds.count() == 2  # the ledger booked each part; together they reverse the sale
    sale = LedgerTransaction.objects.get(kind="sale", reference=order.order_no)
    by_account: dict[int, int] = {}
    for txn in (sale, *refunds):
        for entry in txn.entries.all():
            by_account[entry.account_id] = by_account.get(entry.account_id, 0) + entry.amount_minor
    # Every account the sale touched is back where it was (the channel returned its fee with each part).
    assert all(amount == 0 for amount in by_account.values()), by_account
    assert wx.trade_for(payment.out_trade_no)["refunded_minor"] == 1980  # the provider gave back 19.80 in all


def test_a_channel_that_refunds_only_whole_payments_refuses_a_part(api, shop_a, epay_sim, client, settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    order_no = paid_via_api(api, shop_a, epay_sim, client)
    refused = api.post(f"{ORDERS}{order_no}/refund/", {"amount": cny(100)}, format="json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "no_partial_refund"
    assert not Refund.objects.exists() and Order.objects.get(order_no=order_no).state == OrderState.DELIVERED
    wrong = api.post(f"{ORDERS}{order_no}/refund/", {"amount": {"amount_minor": 100, "currency": "USD"}}, format="json")
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "amount"


def test_the_buyer_sees_what_went_back(api, wx, shop_a, client):
    from cardshop.services.notifications import order_link_token

    order = delivered_by_wechat(api, wx, shop_a)
    api.post(f"{ORDERS}{order.order_no}/refund/", {"amount": cny(500)}, format="json")
    assert _wait(lambda: Refund.objects.filter(status=RefundStatus.SUCCEEDED).count() == 1)
    page = client.get(
        f"/orders/{order.order_no}/", {"t": order_link_token(order.order_no)}, follow=True
    ).content.decode()
    assert 'id="secrets"' in page  # still delivered: the codes stay theirs
    assert 'class="price refund-amount">¥5.00<' in page and "refund-done" in page
    api.post(f"{ORDERS}{order.order_no}/refund/", {}, format="json")
    assert _wait(lambda: Order.objects.get(pk=order.pk).state == OrderState.REFUNDED)
    page = client.get(f"/orders/{order.order_no}/").content.decode()
    assert 'class="price refund-amount">¥19.80<' in page  # both parts, in all
