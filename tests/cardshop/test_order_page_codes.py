"""Order page: copy buttons, all codes as a .txt download for this session only, links, deadline, buy again."""

import datetime as dt
import logging
from datetime import timedelta

import pytest
import time_machine
from django.test import Client

from cardshop.models import CardSecret, Order, OrderState, SecretStatus
from cardshop.services.checkout import order_payment_start
from cardshop.services.orders import order_cancel, orders_expire_due
from tests.cardshop.helpers import signed_notify
from tests.conftest import make_product

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_callbacks(settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"


def _checkout(client, product, quantity=1) -> Order:
    resp = client.post(
        f"/p/{product.slug}/", {"quantity": quantity, "email": "codes@example.com", "query_password": "secret1"}
    )
    assert resp.status_code == 302, resp.content
    return Order.objects.get()


def _pay(client, epay_sim, order, capture) -> Order:
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with capture(execute=True):
        assert client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no)).content == b"success"
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    return order


def test_txt_download_is_exactly_the_delivered_codes(
    client, product, epay_sim, django_capture_on_commit_callbacks, caplog
):
    order = _pay(client, epay_sim, _checkout(client, product, quantity=2), django_capture_on_commit_callbacks)
    sold = [s.secret for s in CardSecret.objects.filter(order=order, status=SecretStatus.SOLD).order_by("pk")]
    assert len(sold) == 2

    with caplog.at_level(logging.DEBUG):
        resp = client.get(f"/orders/{order.order_no}/codes.txt")

    assert resp.status_code == 200
    assert resp.content.decode() == "\n".join(sold) + "\n"
    assert resp["Content-Type"] == "text/plain; charset=utf-8"
    assert resp["Content-Disposition"] == f'attachment; filename="order-{order.order_no}.txt"'
    assert "no-store" in resp["Cache-Control"] and "private" in resp["Cache-Control"]
    # The download is logged by count only: no code reaches the log.
    assert not [r for r in caplog.records if any(s in r.getMessage() for s in sold)]
    assert any("2 delivered codes downloaded" in r.getMessage() for r in caplog.records)


def test_txt_download_is_refused_to_another_session(client, product, epay_sim, django_capture_on_commit_callbacks):
    order = _pay(client, epay_sim, _checkout(client, product), django_capture_on_commit_callbacks)
    stranger = Client()
    resp = stranger.get(f"/orders/{order.order_no}/codes.txt")
    assert resp.status_code == 404
    secret = CardSecret.objects.get(order=order).secret
    assert secret not in resp.content.decode()


def test_txt_download_of_an_unpaid_order_is_404(client, product):
    order = _checkout(client, product)
    assert client.get(f"/orders/{order.order_no}/codes.txt").status_code == 404


def test_order_page_has_a_copy_button_per_code_and_the_download_link(
    client, product, epay_sim, django_capture_on_commit_callbacks
):
    order = _pay(client, epay_sim, _checkout(client, product, quantity=2), django_capture_on_commit_callbacks)
    html = client.get(f"/orders/{order.order_no}/").content.decode()
    for i, s in enumerate(CardSecret.objects.filter(order=order).order_by("pk"), start=1):
        assert f'<code class="code" id="code-{i}">{s.secret}</code>' in html
        assert f'data-copy="code-{i}"' in html
    assert html.count('class="copy secondary"') == 2
    assert f'id="download-codes" href="/orders/{order.order_no}/codes.txt" download' in html


def test_a_reusable_link_is_shown_as_a_link(
    client, merchant, epay_account, epay_sim, django_capture_on_commit_callbacks
):
    url = "https://dl.example/pack?k=1&v=2"
    product = make_product(merchant, secrets_count=0, kind="reusable", reusable_secret=url)
    order = _pay(client, epay_sim, _checkout(client, product), django_capture_on_commit_callbacks)
    html = client.get(f"/orders/{order.order_no}/").content.decode()
    assert 'class="code delivered-link" id="code-1" href="https://dl.example/pack?k=1&amp;v=2"' in html
    assert client.get(f"/orders/{order.order_no}/codes.txt").content.decode() == url + "\n"


def test_a_reusable_text_that_is_not_a_url_stays_a_code(
    client, merchant, epay_account, epay_sim, django_capture_on_commit_callbacks
):
    product = make_product(merchant, secrets_count=0, kind="reusable", reusable_secret="javascript:alert(1)")
    order = _pay(client, epay_sim, _checkout(client, product), django_capture_on_commit_callbacks)
    html = client.get(f"/orders/{order.order_no}/").content.decode()
    assert '<code class="code" id="code-1">javascript:alert(1)</code>' in html and "delivered-link" not in html


def test_pending_order_shows_its_deadline(client, product):
    order = _checkout(client, product)
    html = client.get(f"/orders/{order.order_no}/").content.decode()
    expected = order.expires_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f'data-deadline="{expected}"' in html and 'id="countdown"' in html
    assert "buy-again" not in html


def test_expired_order_says_why_and_offers_buy_again(client, product):
    order = _checkout(client, product)
    with time_machine.travel(order.expires_at + timedelta(seconds=1), tick=False):
        assert orders_expire_due() == 1
    order.refresh_from_db()
    assert order.state == OrderState.EXPIRED

    html = client.get(f"/orders/{order.order_no}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert "This order expired because it was not paid before" in html
    assert f'id="buy-again" href="/p/{product.slug}/"' in html
    assert 'id="countdown"' not in html and "Pay now" not in html


def test_cancelled_order_offers_buy_again(client, product):
    order = _checkout(client, product)
    order_cancel(order_no=order.order_no)
    html = client.get(f"/orders/{order.order_no}/").content.decode()
    assert "This order was cancelled before it was paid." in html
    assert f'id="buy-again" href="/p/{product.slug}/"' in html
