"""Strict inputs on the callback road (issue 9, point 8).

An amount is read whole and exactly as the provider's protocol writes it: a correctly SIGNED callback whose amount
carries a trailing newline, a space, a sign, an exponent, one decimal too many, a leading zero, non-ASCII digits
or (WeChat Pay's JSON integers) a float, a string or a bool is refused with `bad_amount`, and nothing changes.
A callback by an HTTP method the channel's provider never notifies by is answered 405 before anything is read.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
import requests

from cardshop.models import Order, OrderState
from payments.models import ProviderNotification
from payments.simulators.base import NotifyRequest
from tests.conformance import test_channels
from tests.conformance.test_channels import _delivered, _wait, snapshot

pytestmark = pytest.mark.django_db(transaction=True)

shop, simulators = test_channels.shop, test_channels.simulators

PRICE_MINOR = 990  # the conformance product's price (ProductFactory)
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def _text_variants(good: str, *, decimal: bool) -> list[str]:
    """The right amount, written wrong: each passes a lax parser (`\\d`, `$`, float(), int(), Decimal())."""
    bad = [
        good + "\n",
        " " + good,
        good + " ",
        "+" + good,
        good + "e0",
        "0" + good,
        good.translate(ARABIC_INDIC),
        good.translate(FULLWIDTH),
    ]
    return bad + ([good + "0", good.replace(".", ",")] if decimal else [good + ".0", "-" + good])


BAD_AMOUNTS: dict[str, list[object]] = {
    "alipay": _text_variants("9.90", decimal=True),
    "epay": _text_variants("9.90", decimal=True),
    "bankgw": _text_variants(str(PRICE_MINOR), decimal=False),
    # JSON integers of fen: a float, a string or a bool (True is an int in Python) is not one, in total or payer_total.
    "wechatpay": [
        float(PRICE_MINOR),
        str(PRICE_MINOR),
        True,
        {"payer_total": float(PRICE_MINOR)},
        {"payer_total": str(PRICE_MINOR)},
    ],
}
AMOUNT_CASES = [pytest.param(code, bad, id=f"{code}-{bad!r}") for code, bads in BAD_AMOUNTS.items() for bad in bads]
POST_ONLY = ["alipay", "wechatpay", "bankgw"]


@pytest.mark.parametrize(("shop", "bad"), AMOUNT_CASES, indirect=["shop"])
def test_signed_callback_with_a_malformed_amount_is_refused(shop, bad):
    _, payment = shop.start()
    assert payment.amount.amount_minor == PRICE_MINOR
    shop.sim.faults.drop_notify = 1
    shop.sim.pay(payment.out_trade_no)  # really paid: only the malformed callback arrives
    forged = shop.sim.notify_request(payment.out_trade_no, amount=bad)
    before = snapshot()
    resp = shop.post(forged)
    assert resp.status_code == 400, (resp.status_code, resp.text[:200])
    assert "bad_amount" in resp.text  # refused by the amount parser, not by the signature check
    assert snapshot() == before


@pytest.mark.parametrize("shop", POST_ONLY, indirect=True)
def test_callback_by_get_to_a_post_only_channel_is_405_before_verification(shop):
    order, payment = shop.start()
    shop.sim.faults.drop_notify = 1
    shop.sim.pay(payment.out_trade_no)
    valid = shop.sim.notify_request(payment.out_trade_no)
    url = f"{shop.url}/notify/{shop.code}/"
    before = snapshot()
    # The signed fields replayed as a query string (a link, a crawler, a proxy turning POST into GET).
    as_query = dict(parse_qsl(valid.body.decode(), keep_blank_values=True)) if valid.body[:1] != b"{" else {}
    for method in ("GET", "PUT", "HEAD"):
        resp = requests.request(method, url, params=as_query, headers=valid.headers, data=valid.body, timeout=10)
        assert resp.status_code == 405, (method, resp.status_code)
        assert resp.headers["Allow"] == "POST"
    assert snapshot() == before
    # The same callback by the provider's own method is applied: it was the method that was refused.
    assert shop.post(valid).status_code < 300
    assert _wait(lambda: _delivered(order))


@pytest.mark.parametrize("shop", ["epay"], indirect=True)
def test_epay_notifies_by_get_or_by_post(shop):
    assert shop.post(_paid_epay_notify(shop, "GET")).status_code == 200
    assert shop.post(_paid_epay_notify(shop, "POST")).status_code == 200
    assert ProviderNotification.objects.count() == 2
    assert Order.objects.filter(state=OrderState.DELIVERED).count() == 2


def _paid_epay_notify(shop, method: str):
    """The panel's notify for a freshly paid order, sent by `method` (panels differ)."""
    _, payment = shop.start()
    shop.sim.faults.drop_notify = 1
    shop.sim.pay(payment.out_trade_no)
    notify = shop.sim.notify_request(payment.out_trade_no)
    if method == "POST":
        return NotifyRequest(method="POST", body=urlencode(notify.query).encode(), headers={})
    return notify


def test_unknown_channel_is_still_404(client):
    assert client.get("/notify/nope/").status_code == 404
    assert client.post("/notify/nope/").status_code == 404


@pytest.mark.parametrize("shop", ["wechatpay"], indirect=True)
@pytest.mark.parametrize("timestamp", ["²", "+1700000000", "1700000000.0"])
def test_wechatpay_timestamp_header_must_be_ascii_seconds(shop, timestamp):
    """str.isdigit() takes "²" (and int() then raises): such a header is refused as a 400, never a 500."""
    _, payment = shop.start()
    valid = shop.sim.notify_request(payment.out_trade_no)
    headers = {**valid.headers, "Wechatpay-Timestamp": timestamp}
    before = snapshot()
    resp = requests.post(f"{shop.url}/notify/wechatpay/", data=valid.body, headers=headers, timeout=10)
    assert resp.status_code == 400 and "stale_timestamp" in resp.text
    assert snapshot() == before
