"""Trades expire at the provider (issue 9, point 4): every channel whose protocol takes an expiry is sent the
order's deadline in the provider's own field and format, and the provider itself refuses payment after it, so a
buyer cannot pay a trade we already gave up on.

epay's MD5-signed form has no standard expiry field: it is not in this list and lapses by our own close logic
(tests/conformance/test_close_on_expiry.py). Stripe belongs to its own suite.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine

from cardshop.models import Order
from payments.channels.alipay import wire as alipay_wire
from payments.channels.bankgw import wire as bankgw_wire
from payments.channels.base import CreateOrder, ObservedStatus
from payments.channels.wechatpay import wire as wechatpay_wire
from payments.models import ChannelAccount, Payment
from payments.services.adapters import adapter_for
from tests.conformance import test_channels

pytestmark = pytest.mark.django_db(transaction=True)

# The conformance suite's fixtures: one running simulator per channel, a channel account and a product on it.
shop, simulators = test_channels.shop, test_channels.simulators


def _alipay(at: datetime) -> str:
    return at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")


def _wechatpay(at: datetime) -> str:
    return at.astimezone(timezone(timedelta(hours=8))).replace(microsecond=0).isoformat()


def _bankgw(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# channel -> (the simulator's record of the field as received, the provider's format written out here)
EXPIRING = {
    "alipay": ("time_expire", _alipay),
    "wechatpay": ("time_expire", _wechatpay),
    "bankgw": ("expires_at", _bankgw),
}
expiring = pytest.mark.parametrize("shop", list(EXPIRING), indirect=True)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (alipay_wire.time_expire, "2026-12-02 18:00:00"),
        (wechatpay_wire.time_expire, "2026-12-02T18:00:00+08:00"),
        (bankgw_wire.expires_at, "2026-12-02T10:00:00Z"),
    ],
)
def test_deadline_is_written_in_the_providers_format_never_later(fmt, expected):
    # 10:00:00.999 UTC: the fraction is cut, so the provider never holds a trade open past our deadline.
    assert fmt(datetime(2026, 12, 2, 10, 0, 0, 999_999, tzinfo=UTC)) == expected
    assert fmt(datetime(2026, 12, 2, 18, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai"))) == expected


@expiring
def test_create_sends_the_orders_deadline(shop):
    order, payment = shop.start()
    deadline = Order.objects.get(pk=order.pk).expires_at
    field, fmt = EXPIRING[shop.code]
    assert shop.sim.trade_for(payment.out_trade_no)[field] == fmt(deadline)


@expiring
def test_provider_refuses_payment_after_the_deadline(shop):
    order, payment = shop.start()
    deadline = Order.objects.get(pk=order.pk).expires_at
    adapter = adapter_for(ChannelAccount.objects.get(code=shop.code))
    # Simulators run in this process: moving the clock moves theirs too.
    with time_machine.travel(deadline - timedelta(seconds=2), tick=True):
        assert shop.sim.trade_for(payment.out_trade_no)["status"] == "pending"
        assert adapter.query(payment.out_trade_no).status == ObservedStatus.PENDING
    with time_machine.travel(deadline + timedelta(seconds=1), tick=True):
        with pytest.raises(ValueError):  # the buyer's late scan / cashier click
            shop.sim.pay(payment.out_trade_no)
        assert shop.sim.trade_for(payment.out_trade_no)["status"] == "closed"
        observed = adapter.query(payment.out_trade_no)
    assert observed.status == ObservedStatus.CLOSED
    assert Payment.objects.get().status == "pending"  # our side is closed by its own expiry, not by this test


@expiring
def test_no_deadline_sends_no_field(shop):
    """A payment request without a known deadline leaves the provider's own default in place."""
    _, payment = shop.start()
    p = Payment.objects.get(out_trade_no=payment.out_trade_no)
    out_trade_no = p.out_trade_no[:-1] + ("A" if p.out_trade_no[-1] != "A" else "B")
    created = adapter_for(p.account).create(
        CreateOrder(
            out_trade_no=out_trade_no,
            amount=p.amount,
            subject="no deadline",
            notify_url=f"{shop.url}/notify/{shop.code}/",
            return_url="",
            client_ip="10.0.0.1",
            method="",
        )
    )
    assert created.qr_content or created.pay_url
    trade = shop.sim.trade_for(out_trade_no)
    assert trade[EXPIRING[shop.code][0]] == ""
    assert trade["status"] == "pending"
