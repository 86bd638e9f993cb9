"""Pending cap: per email and per network, sized separately; the refusal names only the buyer's own order."""

from __future__ import annotations

import pytest

from cardshop.models import Order
from cardshop.services.checkout import TooManyPending, pending_caps
from tests.cardshop.helpers import buy
from tests.conftest import make_product

pytestmark = pytest.mark.django_db


@pytest.fixture
def stocked(merchant, epay_account):
    return make_product(merchant, secrets_count=30, max_quantity=1)


@pytest.fixture
def caps(settings):
    settings.CARDSHOP_MAX_PENDING_PER_BUYER = None
    settings.CARDSHOP_MAX_PENDING_PER_EMAIL = 2
    settings.CARDSHOP_MAX_PENDING_PER_IP = 4


def _post(client, product, *, email: str, ip: str):
    return client.post(
        f"/p/{product.slug}/",
        {"quantity": 1, "email": email, "query_password": "secret1"},
        REMOTE_ADDR=ip,
    )


def test_defaults_are_three_per_email_and_ten_per_ip(settings):
    settings.CARDSHOP_MAX_PENDING_PER_BUYER = None
    assert pending_caps() == (3, 10)


def test_the_old_single_setting_still_sizes_both(settings):
    settings.CARDSHOP_MAX_PENDING_PER_BUYER = 5
    assert pending_caps() == (5, 5)


def test_email_cap_holds_across_networks(stocked, caps):
    buy(stocked, email="hoarder@example.com", ip="10.1.0.1")
    buy(stocked, email="hoarder@example.com", ip="10.2.0.1")
    with pytest.raises(TooManyPending) as refused:
        buy(stocked, email="hoarder@example.com", ip="10.3.0.1")
    assert refused.value.scope == "email"
    assert Order.objects.count() == 2


def test_ip_cap_is_larger_so_a_shared_nat_does_not_block_strangers(stocked, caps):
    # Four different buyers behind one NAT: more than the email cap, all accepted.
    for i in range(4):
        buy(stocked, email=f"neighbour{i}@example.com", ip="203.0.113.7")
    with pytest.raises(TooManyPending) as refused:
        buy(stocked, email="fifth@example.com", ip="203.0.113.7")
    assert refused.value.scope == "ip"
    assert refused.value.order_no == ""
    assert Order.objects.count() == 4
    buy(stocked, email="fifth@example.com", ip="198.51.100.1")  # the same buyer elsewhere is fine


def test_ip_cap_counts_a_whole_ipv6_64(stocked, caps):
    for i in range(4):
        buy(stocked, email=f"v6-{i}@example.com", ip=f"2001:db8:1:2::{i + 1}")
    with pytest.raises(TooManyPending) as refused:
        buy(stocked, email="v6-new@example.com", ip="2001:db8:1:2:ffff::9")
    assert refused.value.scope == "ip"


def test_email_refusal_names_the_buyers_own_order_with_pay_and_cancel(client, stocked, caps):
    first = _post(client, stocked, email="me@example.com", ip="10.5.0.1")
    second = _post(client, stocked, email="me@example.com", ip="10.5.0.1")
    assert first.status_code == second.status_code == 302
    latest = Order.objects.order_by("-created_at").first()

    page = _post(client, stocked, email="me@example.com", ip="10.5.0.1")
    assert page.status_code == 400
    html = page.content.decode()
    assert latest.order_no in html
    assert f'href="/orders/{latest.order_no}/pay/"' in html
    assert f'action="/orders/{latest.order_no}/cancel/"' in html
    # The cancel link works: it cancels that order, and the buyer can buy again.
    cancel = client.post(f"/orders/{latest.order_no}/cancel/")
    assert cancel.status_code == 302
    assert _post(client, stocked, email="me@example.com", ip="10.5.0.1").status_code == 302


def test_email_refusal_in_another_browser_points_to_the_lookup_and_names_no_order(client, stocked, caps):
    first = buy(stocked, email="me@example.com", ip="10.6.0.1")
    order = buy(stocked, email="me@example.com", ip="10.6.0.1")
    page = _post(client, stocked, email="me@example.com", ip="10.7.0.1")  # this session never bought it
    html = page.content.decode()
    # Anyone can type an email: its unpaid orders are not named to them.
    assert order.order_no not in html and first.order_no not in html
    assert "This email already has unpaid orders" in html
    assert 'href="/orders/lookup/"' in html
    assert f"/orders/{order.order_no}/pay/" not in html
    assert client.get(f"/orders/{order.order_no}/pay/").status_code == 404  # no access granted by the message


def test_ip_refusal_names_no_order(client, stocked, caps):
    orders = [buy(stocked, email=f"stranger{i}@example.com", ip="203.0.113.50") for i in range(4)]
    page = _post(client, stocked, email="newcomer@example.com", ip="203.0.113.50")
    assert page.status_code == 400
    html = page.content.decode()
    assert "4 unpaid orders" in html and "try again" in html
    for o in orders:
        assert o.order_no not in html
    assert "/pay/" not in html and "/cancel/" not in html
