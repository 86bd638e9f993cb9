"""Issue 14, proof 4 on real PostgreSQL: twenty buyers use one single-use coupon at the same moment; exactly one
order gets the discount, the others are refused and reserve nothing."""

from __future__ import annotations

from collections import Counter

import pytest

from cardshop.models import CardSecret, Coupon, Order, SecretStatus
from cardshop.services.checkout import order_create
from core.errors import DomainError
from tests.concurrency.test_races import race
from tests.conftest import make_product

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_twenty_buyers_race_for_a_single_use_coupon(require_postgres, merchant, epay_account):
    product = make_product(merchant, secrets_count=30, max_quantity=1)
    Coupon.objects.create(merchant=merchant, code="ONLYONE", kind="percent", percent_off=50, max_uses=1)

    def buy(i: int) -> str:
        try:
            return order_create(
                product_id=product.pk,
                quantity=1,
                email=f"racer{i}@example.com",
                query_password="secret1",
                buyer_ip=f"10.2.0.{i}",
                coupon_code="ONLYONE",
            ).order_no
        except DomainError as exc:
            return exc.code

    results = race(20, buy)
    outcomes = Counter("order" if r and str(r).isdigit() else r for r in results)
    assert outcomes == {"order": 1, "coupon_used_up": 19}, results
    [order] = Order.objects.all()
    assert (order.discount_minor, order.coupon.code) == (product.price_minor // 2, "ONLYONE")
    assert Coupon.objects.get().uses == 1
    assert CardSecret.objects.filter(status=SecretStatus.RESERVED).count() == 1  # the refused reserved nothing
