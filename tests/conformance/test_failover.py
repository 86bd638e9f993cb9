"""Failover at creation: a channel that times out or refuses the create is skipped for the next ranked one;
the buyer pays there and the order is delivered once. The skipped try stays for the janitor, never failed."""

from __future__ import annotations

import json

import pytest

from cardshop.models import CardSecret, Order, OrderState
from cardshop.services.checkout import order_payment_start
from payments.models import ChannelAccount, Payment, PaymentStatus, RoutingSettings
from payments.services import channel_choice
from payments.simulators.alipay import AlipaySimulator
from payments.simulators.epay import EpaySimulator
from tests.cardshop.helpers import buy
from tests.conformance.test_channels import _wait
from tests.conftest import make_product

pytestmark = pytest.mark.django_db(transaction=True)


def _account(sim, code: str, priority: int, **kw) -> ChannelAccount:
    acct = sim.account()
    return ChannelAccount.objects.create(
        code=code,
        name=code,
        merchant_no=acct.merchant_no,
        base_url=kw.pop("base_url", acct.base_url),
        currency=acct.currency,
        credentials=json.dumps(acct.credentials),
        priority=priority,
        **kw,
    )


@pytest.fixture
def two_channels(live_server, settings, merchant):
    """epay first (priority 1), Alipay second: both take the buyer's Alipay method. No exploration."""
    settings.CARDSHOP_PUBLIC_URL = live_server.url
    RoutingSettings.objects.create(exploration_share=0.0, small_below_minor=None, large_above_minor=None)
    epay, alipay = EpaySimulator().start(), AlipaySimulator().start()
    first, second = _account(epay, "epay", 1), _account(alipay, "alipay", 2)
    channel_choice.cache_clear()
    yield epay, alipay, first, second, make_product(merchant, secrets_count=2)
    channel_choice.cache_clear()
    epay.stop()
    alipay.stop()


def test_create_timeout_on_the_first_channel_fails_over_to_the_second(two_channels, settings):
    epay, alipay, first, second, product = two_channels
    settings.PAYMENTS_PROVIDER_TIMEOUTS = (1.0, 0.5)
    epay.faults.timeout, epay.faults.hang_seconds = 1, 1.5
    order = buy(product)
    view = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", method="alipay")
    assert view.channel_code == "alipay" and view.status == PaymentStatus.PENDING
    # Asking again shows the same live payment: nothing switches behind the buyer's back.
    assert order_payment_start(order_no=order.order_no, client_ip="10.0.0.1").out_trade_no == view.out_trade_no
    tries = list(Payment.objects.order_by("attempt").values_list("channel_code", "status", "attempt"))
    assert tries == [("epay", PaymentStatus.UNKNOWN, 1), ("alipay", PaymentStatus.PENDING, 2)]
    routed = Payment.objects.get(attempt=2).routing
    assert routed["ranked"] == [first.pk, second.pk]  # the decision is kept with every try, explainable later
    assert {c["code"]: c["ok"] for c in routed["candidates"]} == {"epay": True, "alipay": True}

    alipay.pay(view.out_trade_no)  # the buyer pays where the QR came from
    assert _wait(lambda: Order.objects.get(pk=order.pk).state == OrderState.DELIVERED)
    assert CardSecret.objects.filter(order=order).count() == 1


def test_refused_connection_fails_over_and_marks_the_try_failed(two_channels):
    epay, alipay, first, second, product = two_channels
    ChannelAccount.objects.filter(pk=first.pk).update(base_url="http://127.0.0.1:9")  # nobody listens
    channel_choice.cache_clear()
    order = buy(product)
    view = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", method="alipay")
    assert view.channel_code == "alipay"
    assert Payment.objects.get(attempt=1).status == PaymentStatus.FAILED
