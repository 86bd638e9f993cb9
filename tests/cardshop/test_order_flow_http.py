"""Proof 1: checkout -> pay at the simulator -> signed notify over HTTP -> secrets on the order page and via lookup."""

import io
import re

import pytest
import requests
from django.core import mail
from PIL import Image

from cardshop.models import CardSecret, Order, OrderState, SecretStatus
from payments.models import Payment, PaymentStatus, ProviderNotification
from tests.cardshop.helpers import checkout, csrf_token

pytestmark = pytest.mark.django_db(transaction=True)


def test_buyer_checks_out_pays_and_gets_the_secrets(public_url, epay_account, epay_sim, product):
    base = public_url
    buyer = requests.Session()

    # Checkout reserves stock at once and sends the buyer to the pay page.
    resp = checkout(buyer, base, product.slug, quantity=2)
    assert resp.status_code == 302
    order = Order.objects.get()
    assert resp.headers["Location"] == f"/orders/{order.order_no}/pay/"
    assert CardSecret.objects.filter(order=order, status=SecretStatus.RESERVED).count() == 2

    # The pay page shows a QR image and the simulator's cashier link.
    picker = buyer.get(base + resp.headers["Location"])  # epay takes Alipay, WeChat Pay and QQ: the buyer picks
    assert 'href="?method=alipay"' in picker.text and 'href="?method=wxpay"' in picker.text
    pay = buyer.get(base + resp.headers["Location"] + "?method=alipay")
    assert pay.status_code == 200
    qr = buyer.get(f"{base}/orders/{order.order_no}/pay/qr.png")
    assert qr.status_code == 200 and qr.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(qr.content)).size[0] > 100
    assert requests.get(f"{base}/orders/{order.order_no}/pay/qr.png").status_code == 404  # not your order
    cashier = re.search(r'id="cashier-link" href="([^"]+)"', pay.text).group(1)
    assert cashier.startswith(epay_sim.base_url + "/cashier/")

    # Paying at the cashier makes the simulator send a signed notify to /notify/epay/.
    page = requests.get(cashier)
    assert page.status_code == 200 and 'id="pay"' in page.text
    paid = requests.post(cashier + "/pay", allow_redirects=False)
    assert paid.status_code in (200, 302)
    attempts = epay_sim.trade(out_trade_no=Payment.objects.get().out_trade_no)["notify_attempts"]
    assert [a["response_text"] for a in attempts] == ["success"]

    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    sold = list(CardSecret.objects.filter(order=order, status=SecretStatus.SOLD).order_by("pk"))
    assert len(sold) == 2

    # The order page (same browser session) shows exactly those secrets.
    detail = buyer.get(f"{base}/orders/{order.order_no}/")
    for s in sold:
        assert s.secret in detail.text
    status = buyer.get(f"{base}/orders/{order.order_no}/status/").json()
    assert status["state"] == "delivered"

    # A stranger cannot open it by order number alone...
    stranger = requests.Session()
    assert stranger.get(f"{base}/orders/{order.order_no}/").status_code == 404
    # ...but finds it with order number + query password.
    form = stranger.get(f"{base}/orders/lookup/")
    found = stranger.post(
        f"{base}/orders/lookup/",
        data={
            "csrfmiddlewaretoken": csrf_token(form.text),
            "order_no_or_email": order.order_no,
            "query_password": "hunter22",
        },
        headers={"Referer": f"{base}/orders/lookup/"},
    )
    assert found.status_code == 200
    assert all(s.secret in found.text for s in sold)

    # Exactly one email, with a signed link to the order, sent after commit.
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["buyer@example.com"]
    link = re.search(r"(http://\S+/orders/\S+\?t=\S+)", mail.outbox[0].body).group(1)
    via_mail = requests.Session().get(link)
    assert sold[0].secret in via_mail.text

    # A replayed notify is acknowledged and changes nothing.
    replay = epay_sim.send_notify(attempts[0]["params"]["trade_no"])
    assert replay.text == "success"
    assert ProviderNotification.objects.count() == 1
    assert CardSecret.objects.filter(status=SecretStatus.SOLD).count() == 2
    assert len(mail.outbox) == 1
