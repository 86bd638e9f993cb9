"""Pay page: product, quantity and amount, and the reservation's end as an unambiguous UTC instant."""

import datetime as dt
import re

import pytest
from django.utils import timezone

from cardshop.models import Order

pytestmark = pytest.mark.django_db


def _checkout(client, product, quantity=2):
    resp = client.post(
        f"/p/{product.slug}/", {"quantity": quantity, "email": "pay@example.com", "query_password": "secret1"}
    )
    assert resp.status_code == 302
    return Order.objects.get()


@pytest.mark.parametrize("query", ["", "?method=alipay"], ids=["method-picker", "qr-page"])
def test_pay_page_shows_product_quantity_amount_and_the_utc_deadline(client, product, query):
    order = _checkout(client, product, quantity=2)

    html = client.get(f"/orders/{order.order_no}/pay/{query}", HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert re.search(rf'id="order-summary">{re.escape(product.name)} &times; <span id="order-qty">2</span>', html)
    assert f'id="order-amount">{order.amount_label}<' in html
    expected = order.expires_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f'data-deadline="{expected}"' in html
    assert f'<time id="deadline-at" datetime="{expected}">' in html
    # Without JavaScript: the absolute time with its UTC offset (the shop's zone), never a bare "CST".
    local = timezone.localtime(order.expires_at)
    assert f"{local:%Y-%m-%d %H:%M} (UTC{local:%z})</time>" in html
    assert "CST" not in html
    left = re.search(r'id="countdown">(\d\d):(\d\d)<', html)
    seconds = int(left.group(1)) * 60 + int(left.group(2))
    assert abs((order.expires_at - timezone.now()).total_seconds() - seconds) < 5
