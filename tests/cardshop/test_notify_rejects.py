"""Proof 2: forged and broken notifies get a 4xx and change no row; a replay is acknowledged and delivers nothing."""

import hashlib

import pytest
from django.core import mail

from cardshop.models import CardSecret, Order, OrderEvent, SecretStatus
from cardshop.services.checkout import order_create, order_payment_start
from payments.channels.epay.signing import signing_string
from payments.models import Payment, ProviderNotification
from tests.cardshop.helpers import signed_notify

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(epay_account, epay_sim, product, settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"  # the simulator's own notify goes nowhere; tests send it
    order = order_create(
        product_id=product.pk, quantity=1, email="b@example.com", query_password="secret1", buyer_ip="10.0.0.1"
    )
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    trade_no = epay_sim.trade_for(payment.out_trade_no)["trade_no"]
    return order, payment, trade_no


def snapshot():
    return (
        list(Order.objects.values_list("pk", "state", "paid_at")),
        list(Payment.objects.values_list("pk", "status", "provider_trade_no")),
        list(CardSecret.objects.values_list("pk", "status", "order_id")),
        ProviderNotification.objects.count(),
        OrderEvent.objects.count(),
        len(mail.outbox),
    )


def md5_sign(params, key):
    return hashlib.md5((signing_string(params) + key).encode()).hexdigest()


def forged(epay_sim, trade_no, key, **changes):
    params = epay_sim.notify_params(trade_no)
    params.update(changes)
    params["sign"] = md5_sign(params, key)  # validly signed with *some* key, see each case
    return params


@pytest.mark.parametrize(
    "case, expected_code",
    [
        ("bad_signature", "bad_signature"),
        ("wrong_pid", "wrong_merchant"),
        ("wrong_amount", "wrong_amount"),
        ("unknown_order", "unknown_order"),
        ("missing_fields", "missing_fields"),
        ("not_success", "status_not_success"),
        ("repeated_param", "repeated_parameter"),
        ("inexact_amount", "bad_amount"),
    ],
)
def test_forged_or_broken_notify_is_refused_and_changes_nothing(
    client, pending, epay_sim, epay_account, case, expected_code
):
    order, payment, trade_no = pending
    key = epay_account.credentials_dict()["key"]
    if case == "bad_signature":
        params = {**epay_sim.notify_params(trade_no), "sign": "0" * 32}
    elif case == "wrong_pid":
        params = forged(epay_sim, trade_no, key, pid="99999")
    elif case == "wrong_amount":
        params = forged(epay_sim, trade_no, key, money="0.01")
    elif case == "unknown_order":
        params = forged(epay_sim, trade_no, key, out_trade_no="P-does-not-exist")
    elif case == "missing_fields":
        params = epay_sim.notify_params(trade_no)
        del params["trade_no"]
        params["sign"] = md5_sign(params, key)
    elif case == "not_success":
        params = forged(epay_sim, trade_no, key, trade_status="WAIT_BUYER_PAY")
    elif case == "inexact_amount":
        params = forged(epay_sim, trade_no, key, money="9.900")
    else:
        params = epay_sim.notify_params(trade_no)
    before = snapshot()
    if case == "repeated_param":
        query = "&".join(f"{k}={v}" for k, v in params.items()) + "&money=0.01"
        resp = client.get("/notify/epay/?" + query)
    else:
        resp = client.get("/notify/epay/", params)
    assert resp.status_code == 400
    assert expected_code in resp.content.decode()
    assert resp.content.decode() != "success"
    assert snapshot() == before


def test_notify_for_an_unknown_channel_is_404(client, pending, epay_sim):
    _order, _payment, trade_no = pending
    resp = client.get("/notify/paypal/", epay_sim.notify_params(trade_no))
    assert resp.status_code == 404


def test_notify_signed_with_another_accounts_key_is_refused(client, pending, epay_sim):
    # Replaying a notify meant for another channel account (other key) onto this payment.
    _order, _payment, trade_no = pending
    params = forged(epay_sim, trade_no, "another-accounts-key")
    before = snapshot()
    assert client.get("/notify/epay/", params).status_code == 400
    assert snapshot() == before


def test_valid_notify_by_get_and_post_applies_once_and_replays_return_success(client, pending, epay_sim):
    order, payment, trade_no = pending
    params = epay_sim.notify_params(trade_no)
    first = client.get("/notify/epay/", params)
    assert (first.status_code, first.content) == (200, b"success")
    after_first = snapshot()
    assert CardSecret.objects.filter(order=order, status=SecretStatus.SOLD).count() == 1
    for _ in range(3):
        assert client.get("/notify/epay/", params).content == b"success"
        assert client.post("/notify/epay/", params).content == b"success"
    assert snapshot() == after_first
    assert ProviderNotification.objects.count() == 1


def test_database_failure_is_not_acknowledged(client, pending, epay_sim, monkeypatch):
    from django.db import OperationalError

    from payments.services import payments as payment_services

    def down(**kwargs):
        raise OperationalError("connection lost")

    monkeypatch.setattr(payment_services, "observation_apply", down)
    _order, _payment, trade_no = pending
    before = snapshot()
    resp = client.get("/notify/epay/", epay_sim.notify_params(trade_no))
    assert resp.status_code == 503
    assert resp.content != b"success"
    assert snapshot() == before


@pytest.mark.parametrize("credentials", ["", "{}", '{"key": ""}'])
def test_account_without_a_key_refuses_every_notify(client, pending, epay_sim, epay_account, credentials):
    # md5(data + "") is what a forger computes when a peer shop left the key empty.
    _order, _payment, trade_no = pending
    type(epay_account).objects.filter(pk=epay_account.pk).update(credentials="")
    if credentials:
        epay_account.credentials = credentials
        epay_account.save(update_fields=["credentials"])
    params = epay_sim.notify_params(trade_no)
    params["sign"] = md5_sign(params, "")
    before = snapshot()
    resp = client.get("/notify/epay/", params)
    assert resp.status_code == 400 and "no_credentials" in resp.content.decode()
    assert snapshot() == before


def test_epay_callback_sent_to_another_channels_url_is_refused(client, pending, epay_sim):
    _order, _payment, trade_no = pending
    before = snapshot()
    # By POST, the method Alipay notifies by (a GET is refused before this: see test_strict_inputs).
    resp = client.post("/notify/alipay/", epay_sim.notify_params(trade_no))
    assert resp.status_code == 400  # the payment is epay's: alipay's endpoint does not know it
    assert snapshot() == before


def test_a_provider_trade_number_pays_one_payment_only(client, epay_account, epay_sim, product, settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    first = order_create(
        product_id=product.pk, quantity=1, email="a@example.com", query_password="secret1", buyer_ip=None
    )
    paid = order_payment_start(order_no=first.order_no, client_ip="10.0.0.1")
    assert client.get("/notify/epay/", signed_notify(epay_sim, paid.out_trade_no)).content == b"success"
    second = order_create(
        product_id=product.pk, quantity=1, email="b@example.com", query_password="secret1", buyer_ip=None
    )
    other = order_payment_start(order_no=second.order_no, client_ip="10.0.0.1")
    # The panel's own notify for the second trade, but naming the first trade's number (signed with the key).
    reused = signed_notify(epay_sim, other.out_trade_no)
    reused["trade_no"] = epay_sim.trade_for(paid.out_trade_no)["trade_no"]
    reused["sign"] = epay_sim.sign(reused, epay_account.credentials_dict()["key"])
    before = snapshot()
    resp = client.get("/notify/epay/", reused)
    assert resp.status_code == 400 and b"event_reused" in resp.content
    assert snapshot() == before
    # Said by any other event (here a query answer), the trade number itself is refused.
    from django.db import transaction

    from payments.channels.base import Observation, ObservedStatus
    from payments.contracts import NotificationRejected
    from payments.facade import query_result_apply

    claim = Observation(
        out_trade_no=other.out_trade_no,
        provider_trade_no=reused["trade_no"],
        status=ObservedStatus.SUCCEEDED,
        amount=other.amount,
        event_key="query",
        provider_status="1",
    )
    with pytest.raises(NotificationRejected) as exc, transaction.atomic():
        query_result_apply(out_trade_no=other.out_trade_no, observation=claim)
    assert exc.value.code == "trade_no_reused"
    assert snapshot() == before
