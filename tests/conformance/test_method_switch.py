"""Issue 10, switching method on the pay page: the old trade is closed at the provider before a new one is
made (the one-payable-trade rule of issue 9), on every channel; a channel that cannot close refuses the switch."""

from __future__ import annotations

import json

import pytest

from cardshop.models import Order, OrderState
from cardshop.services.checkout import order_payment_switch
from core.errors import DomainError
from payments.channels import registry
from payments.channels.base import Capability
from payments.models import ChannelAccount, Payment, PaymentStatus
from payments.services import channel_choice
from payments.simulators.catalog import SIMULATORS, simulator_class
from tests.conformance import test_channels
from tests.conformance.test_channels import _delivered, _wait

pytestmark = pytest.mark.django_db(transaction=True)

shop, simulators = test_channels.shop, test_channels.simulators


@pytest.mark.parametrize("shop", list(SIMULATORS), indirect=True)
def test_switching_method_closes_the_old_trade_first(shop):
    order, first = shop.start()
    method = sorted(registry.get(shop.code).methods)[0]
    if Capability.CLOSE not in registry.get(shop.code).capabilities:
        with pytest.raises(DomainError) as exc:
            order_payment_switch(order_no=order.order_no, client_ip="10.0.0.1", method=method)
        assert exc.value.code == "switch_refused"
        assert list(Payment.objects.values_list("out_trade_no", "status")) == [(first.out_trade_no, "pending")]
        return
    second = order_payment_switch(order_no=order.order_no, client_ip="10.0.0.1", method=method)
    old = Payment.objects.get(out_trade_no=first.out_trade_no)
    assert (old.status, old.error_code) == (PaymentStatus.CLOSED, "switched_by_buyer")
    assert second.out_trade_no != first.out_trade_no and second.status == PaymentStatus.PENDING
    assert second.method == method
    with pytest.raises(Exception):  # noqa: B017 - the provider refuses the closed trade, each in its own words
        shop.sim.pay(first.out_trade_no)
    shop.sim.pay(second.out_trade_no)
    assert _wait(lambda: _delivered(order))
    assert Payment.objects.filter(status=PaymentStatus.SUCCEEDED).count() == 1


@pytest.mark.parametrize("shop", ["alipay"], indirect=True)
def test_a_switch_while_the_create_is_in_flight_is_refused(shop):
    order, first = shop.start()
    Payment.objects.filter(out_trade_no=first.out_trade_no).update(status=PaymentStatus.CREATED)
    with pytest.raises(DomainError):
        order_payment_switch(order_no=order.order_no, client_ip="10.0.0.1", method="alipay")
    assert Payment.objects.count() == 1


@pytest.mark.parametrize("shop", ["alipay"], indirect=True)
def test_the_buyer_switches_from_alipay_to_wechat_pay_on_the_pay_page(shop, simulators, client):
    """Through the pay page: it names the active method and offers the others; the switch closes the Alipay
    trade first, then shows WeChat Pay's QR (a new image URL: never the old trade's cached QR)."""
    wechat = simulators.get("wechatpay") or simulators.setdefault("wechatpay", simulator_class("wechatpay")().start())
    acct = wechat.account(webhook_url=f"{shop.url}/notify/wechatpay/")
    ChannelAccount.objects.create(
        code="wechatpay",
        name="wechatpay (simulator)",
        merchant_no=acct.merchant_no,
        base_url=acct.base_url,
        currency=acct.currency,
        credentials=json.dumps(acct.credentials),
    )
    channel_choice.cache_clear()
    form = {"quantity": 1, "email": "a@example.com", "query_password": "secret1"}
    pay_url = client.post(f"/p/{shop.product.slug}/", form)["Location"]
    page = client.get(pay_url + "?method=alipay").content.decode()
    first = Payment.objects.get()
    assert first.channel_code == "alipay" and "Paying with Alipay" in page and 'id="switch-to-wxpay"' in page
    assert f"qr.png?p={first.out_trade_no}" in page
    switched = client.post(pay_url + "switch/", {"method": "wxpay"})
    assert switched.status_code == 302 and switched["Location"] == pay_url
    page = client.get(pay_url).content.decode()
    second = Payment.objects.exclude(pk=first.pk).get()
    assert Payment.objects.get(out_trade_no=first.out_trade_no).status == PaymentStatus.CLOSED
    assert second.channel_code == "wechatpay" and "Paying with WeChat Pay" in page
    assert f"qr.png?p={second.out_trade_no}" in page and 'id="switch-to-alipay"' in page
    wechat.pay(second.out_trade_no)
    order = second.reference
    assert _wait(lambda: Order.objects.get(order_no=order).state == OrderState.DELIVERED)


@pytest.mark.parametrize("shop", ["stripe"], indirect=True)
def test_a_close_callback_that_lands_first_still_counts_as_closed(shop, monkeypatch):
    """Stripe answers an expire with 200 and also sends checkout.session.expired. When that callback records the
    payment CLOSED before the close step takes its lock, the trade is closed all the same: the switch goes on."""
    from payments.services import payments as payment_services

    order, first = shop.start()
    real = payment_services._adapter

    class CallbackFirst:
        """The real adapter; after its close, wait until the provider's own callback has recorded the close."""

        def __init__(self, account):
            self._inner = real(account)

        def __getattr__(self, name):
            return getattr(self._inner, name)

        def close(self, out_trade_no, provider_trade_no=""):
            self._inner.close(out_trade_no, provider_trade_no)
            assert _wait(lambda: Payment.objects.get(out_trade_no=first.out_trade_no).status == PaymentStatus.CLOSED)

    monkeypatch.setattr(payment_services, "_adapter", CallbackFirst)
    second = order_payment_switch(order_no=order.order_no, client_ip="10.0.0.1", method="card")
    old = Payment.objects.get(out_trade_no=first.out_trade_no)
    assert (old.status, old.error_code) == (PaymentStatus.CLOSED, "switched_by_buyer")
    assert second.out_trade_no != first.out_trade_no and second.status == PaymentStatus.PENDING
