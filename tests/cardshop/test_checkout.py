"""order_create: validation, reservation, pending-order cap; a refused checkout changes nothing."""

import pytest

from cardshop.models import CardSecret, Order, OrderEvent, SecretStatus
from core.errors import DomainError
from tests.cardshop.helpers import buy

pytestmark = pytest.mark.django_db


def test_checkout_reserves_exactly_the_quantity_until_expiry(product):
    order = buy(product, qty=3)
    reserved = CardSecret.objects.filter(order=order, status=SecretStatus.RESERVED)
    assert reserved.count() == 3
    assert all(s.reserved_until == order.expires_at for s in reserved)
    assert order.amount_minor == 3 * 990 and order.currency == "CNY"
    assert order.query_password_hash.startswith("hmac_sha256_query$")
    assert "secret1" not in order.query_password_hash
    assert list(order.events.values_list("kind", flat=True)) == ["created"]


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"qty": 0}, "quantity"),
        ({"qty": 6}, "quantity"),
        ({"email": "not-an-email"}, "email"),
        ({"password": "123"}, "query_password"),
        ({"qty": 5, "email": "x@example.com"}, None),  # fits: 5 in stock
    ],
)
def test_invalid_checkout_is_refused_with_a_reason(product, kwargs, code):
    before = (Order.objects.count(), CardSecret.objects.filter(status=SecretStatus.AVAILABLE).count())
    if code is None:
        buy(product, **kwargs)
        return
    with pytest.raises(DomainError) as exc:
        buy(product, **kwargs)
    assert exc.value.code == code
    assert (Order.objects.count(), CardSecret.objects.filter(status=SecretStatus.AVAILABLE).count()) == before


def test_out_of_stock_rolls_back_the_order(product):
    buy(product, qty=4, email="first@example.com", ip="10.0.0.2")
    with pytest.raises(DomainError) as exc:
        buy(product, qty=2, email="second@example.com", ip="10.0.0.3")
    assert exc.value.code == "out_of_stock"
    assert Order.objects.count() == 1
    assert OrderEvent.objects.count() == 1
    assert CardSecret.objects.filter(status=SecretStatus.AVAILABLE, order__isnull=True).count() == 1


def test_one_buyer_cannot_hold_many_pending_orders(product, settings):
    settings.CARDSHOP_MAX_PENDING_PER_BUYER = 2
    buy(product, email="hoarder@example.com", ip="10.9.9.9")
    buy(product, email="hoarder@example.com", ip="10.9.9.9")
    with pytest.raises(DomainError) as same_email:
        buy(product, email="hoarder@example.com", ip="10.1.1.1")
    with pytest.raises(DomainError) as same_ip:
        buy(product, email="other@example.com", ip="10.9.9.9")
    assert same_email.value.code == same_ip.value.code == "too_many_pending"
    assert Order.objects.count() == 2
    buy(product, email="someone-else@example.com", ip="10.2.2.2")  # others are not affected


def test_checkout_page_shows_price_and_live_stock(client, product):
    buy(product, qty=2)
    page = client.get(f"/p/{product.slug}/")
    assert page.status_code == 200
    assert "¥9.90" in page.content.decode()
    assert "3 in stock" in page.content.decode()


def test_storefront_checkout_error_is_shown_and_changes_nothing(client, product):
    resp = client.post(f"/p/{product.slug}/", {"quantity": 9, "email": "a@example.com", "query_password": "secret1"})
    assert resp.status_code == 400
    assert "Quantity must be between 1 and 5." in resp.content.decode()
    assert Order.objects.count() == 0


def test_pay_page_hides_provider_errors_from_the_buyer(client, product, epay_account, epay_sim):
    from payments.models import Payment, PaymentStatus

    epay_account.merchant_no = "unknown-pid"  # the panel answers 商户不存在
    epay_account.save(update_fields=["merchant_no"])
    client.post(f"/p/{product.slug}/", {"quantity": 1, "email": "p@example.com", "query_password": "secret1"})
    order = Order.objects.get()
    resp = client.get(f"/orders/{order.order_no}/pay/?method=alipay")
    assert resp.status_code == 503
    page = resp.content.decode()
    assert "The payment channel is not available right now." in page
    assert "商户不存在" not in page and "refused" not in page
    assert Payment.objects.get().status == PaymentStatus.FAILED
