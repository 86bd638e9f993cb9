"""WeChat Pay with several accounts (issue 9, point 15).

WeChat encrypts out_trade_no inside the callback, so the shop cannot look the payment up before verifying. The
callback does name the WeChat Pay public key it is signed with (`Wechatpay-Serial`), and each merchant has its
own: the account holding that key is the only one that tries. A forged callback costs one signature check and
is refused with that account's reason, whatever order the accounts are in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from cardshop.services.checkout import order_payment_start
from payments.channels.wechatpay import signing
from payments.channels.wechatpay.adapter import WechatPayAdapter
from payments.models import ChannelAccount, Payment, PaymentStatus, ProviderNotification
from payments.simulators.base import BAD_SIGNATURE, NotifyRequest
from payments.simulators.wechatpay import WechatPaySimulator
from tests.cardshop.helpers import buy
from tests.conftest import make_product

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, WechatPaySimulator]]:
    """Two merchants, each with its own WeChat Pay public key and key id (as WeChat issues them)."""
    both = {"A": WechatPaySimulator().start(), "B": WechatPaySimulator().start()}
    yield both
    for sim in both.values():
        sim.stop()


@pytest.fixture(params=["B first", "A first"])
def accounts(request, sims, settings) -> dict[str, ChannelAccount]:
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"  # callbacks go nowhere: the tests post them
    order = ["B", "A"] if request.param == "B first" else ["A", "B"]
    made = {}
    for name in order:  # pk order is the order the old code tried them in
        acct = sims[name].account()
        made[name] = ChannelAccount.objects.create(
            code="wechatpay",
            name=f"WeChat {name}",
            merchant_no=acct.merchant_no,
            base_url=acct.base_url,
            currency=acct.currency,
            credentials=json.dumps(acct.credentials),
        )
    return made


@pytest.fixture
def payment_on_b(accounts, merchant) -> Payment:
    """A pending payment routed to account B (A is switched off while it is made)."""
    ChannelAccount.objects.filter(pk=accounts["A"].pk).update(enabled=False)
    order = buy(make_product(merchant, secrets_count=2))
    order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", channel_code="wechatpay")
    ChannelAccount.objects.filter(pk=accounts["A"].pk).update(enabled=True)
    payment = Payment.objects.get()
    assert payment.account_id == accounts["B"].pk
    return payment


@pytest.fixture
def checks(monkeypatch) -> dict[str, int]:
    """Counts adapter verifications and RSA signature checks (the real ones run: this only counts them)."""
    counted = {"verify_notification": 0, "signature": 0}
    real_verify_notification, real_signature = WechatPayAdapter.verify_notification, signing.verify

    def verify_notification(self, inbound):
        counted["verify_notification"] += 1
        return real_verify_notification(self, inbound)

    def signature(*args, **kwargs):
        counted["signature"] += 1
        return real_signature(*args, **kwargs)

    monkeypatch.setattr(WechatPayAdapter, "verify_notification", verify_notification)
    monkeypatch.setattr(signing, "verify", signature)
    return counted


def _post(client, notify: NotifyRequest, **header_overrides: str):
    headers = {**notify.headers, **header_overrides}
    headers.pop("Content-Type", None)
    return client.post("/notify/wechatpay/", data=notify.body, content_type=notify.content_type, headers=headers)


def test_callback_for_b_is_verified_by_b_only(client, sims, payment_on_b, checks):
    sims["B"].faults.drop_notify = 1
    sims["B"].pay(payment_on_b.out_trade_no)
    resp = _post(client, sims["B"].notify_request(payment_on_b.out_trade_no))
    assert resp.status_code == 204
    assert checks == {"verify_notification": 1, "signature": 1}
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert ProviderNotification.objects.count() == 1


def test_forged_callback_costs_one_check_and_is_refused_with_bs_reason(client, sims, payment_on_b, checks):
    forged = sims["B"].notify_request(payment_on_b.out_trade_no, variant=BAD_SIGNATURE)
    resp = _post(client, forged)
    assert resp.status_code == 400
    assert resp.content.decode().startswith("fail: bad_signature:")  # B's reason, not A's "unknown_serial"
    assert checks == {"verify_notification": 1, "signature": 1}
    assert Payment.objects.get().status == PaymentStatus.PENDING
    assert ProviderNotification.objects.count() == 0


def test_callback_naming_a_key_no_account_holds_costs_no_check(client, sims, payment_on_b, checks):
    notify = sims["B"].notify_request(payment_on_b.out_trade_no)
    resp = _post(client, notify, **{"Wechatpay-Serial": "PUB_KEY_ID_NOBODY"})
    assert resp.status_code == 400
    assert resp.content.decode().startswith("fail: unknown_serial:")
    assert checks == {"verify_notification": 0, "signature": 0}
    assert Payment.objects.get().status == PaymentStatus.PENDING
