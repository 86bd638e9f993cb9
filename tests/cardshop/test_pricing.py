"""Coupons and tiered prices (issue 14, proof 4): worked examples, a coupon reserved at checkout and given back when
its order expires or is cancelled, its limits, and the ledger lines of a discounted sale (the amount paid, not the
list price). The race for a single-use coupon is in tests/concurrency/test_coupon_race.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from cardshop.models import Coupon, Order
from cardshop.services.checkout import order_payment_start
from cardshop.services.orders import order_cancel, orders_expire_due, payment_notification_handle
from cardshop.services.pricing import coupon_discount, order_price, unit_price_for
from core.errors import DomainError
from settlement.models import LedgerTransaction
from tests.cardshop.helpers import as_lists, buy, signed_notify
from tests.conftest import make_product
from tests.factories.core import MerchantFactory
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db

TIERS = [{"min_quantity": 10, "unit_price_minor": 900}, {"min_quantity": 50, "unit_price_minor": 800}]


@pytest.fixture(autouse=True)
def _no_callbacks(settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"


@pytest.fixture
def wholesale(merchant, epay_account):
    return make_product(merchant, secrets_count=60, price_minor=1000, max_quantity=100, price_tiers=TIERS)


def coupon(merchant, code="SAVE15", **kw) -> Coupon:
    fields = {"kind": "percent", "percent_off": 15} | kw
    return Coupon.objects.create(merchant=merchant, code=code, **fields)


def test_the_worked_example_tiers_then_a_percent_coupon(wholesale, merchant):
    """List 10.00; 10+ at 9.00, 50+ at 8.00. 12 units: 9.00 each, 108.00; 15 % off is 16.20; 91.80 to pay."""
    assert [unit_price_for(wholesale, n) for n in (1, 9, 10, 49, 50, 100)] == [1000, 1000, 900, 900, 800, 800]
    price = order_price(wholesale, 12, coupon=coupon(merchant))
    assert (price.list_price_minor, price.unit_price_minor, price.discount_minor, price.amount_minor) == (
        1000,
        900,
        1620,
        9180,
    )
    order = buy(wholesale, qty=12, coupon_code="save15")  # codes are matched in capitals
    assert (order.list_price_minor, order.unit_price_minor, order.discount_minor, order.amount_minor) == (
        1000,
        900,
        1620,
        9180,
    )
    assert order.coupon.code == "SAVE15" and Coupon.objects.get().uses == 1


def test_discounts_round_half_up_and_never_make_an_order_free(merchant):
    percent = Coupon(kind="percent", percent_off=15)
    assert coupon_discount(percent, 999) == 150  # 149.85 rounds to 150
    assert coupon_discount(percent, 990) == 149  # 148.5 rounds half up to 149
    fixed = Coupon(kind="fixed", amount_off_minor=5000, currency="CNY")
    assert coupon_discount(fixed, 990) == 989  # capped: one fen is still paid


def test_a_fixed_coupon_for_one_product_only(wholesale, merchant, epay_account):
    other = make_product(merchant, slug="other", secrets_count=2, price_minor=990)
    coupon(merchant, code="TEN", kind="fixed", amount_off_minor=100, currency="CNY", percent_off=None, product=other)
    with pytest.raises(DomainError) as refused:
        buy(wholesale, coupon_code="TEN")
    assert refused.value.code == "coupon_not_for_product"
    assert buy(other, coupon_code="TEN").amount_minor == 890


def test_unknown_inactive_and_another_merchants_coupons_are_refused(wholesale, merchant):
    coupon(merchant, code="OFF", is_active=False)
    coupon(MerchantFactory(), code="THEIRS")
    for code in ("NOPE", "OFF", "THEIRS"):
        with pytest.raises(DomainError) as refused:
            buy(wholesale, coupon_code=code, email=f"{code.lower()}@example.com")
        assert refused.value.code == "coupon_invalid", code
    assert not Order.objects.exists()  # a refused coupon reserves nothing


def test_the_validity_window(wholesale, merchant):
    now = timezone.now()
    coupon(merchant, code="LATER", valid_from=now + timedelta(days=1))
    coupon(merchant, code="GONE", valid_until=now - timedelta(seconds=1))
    for code in ("LATER", "GONE"):
        with pytest.raises(DomainError) as refused:
            buy(wholesale, coupon_code=code)
        assert refused.value.code == "coupon_expired"


def test_limits_per_coupon_and_per_buyer(wholesale, merchant):
    coupon(merchant, code="TWICE", max_uses=2, per_buyer_limit=1)
    buy(wholesale, coupon_code="TWICE", email="a@example.com")
    with pytest.raises(DomainError) as refused:
        buy(wholesale, coupon_code="TWICE", email="a@example.com", ip="10.0.0.2")
    assert refused.value.code == "coupon_buyer_limit"
    buy(wholesale, coupon_code="TWICE", email="b@example.com", ip="10.0.0.3")
    with pytest.raises(DomainError) as refused:
        buy(wholesale, coupon_code="TWICE", email="c@example.com", ip="10.0.0.4")
    assert refused.value.code == "coupon_used_up"
    assert Coupon.objects.get().uses == 2


def test_a_coupon_is_given_back_when_its_order_expires_or_is_cancelled(wholesale, merchant):
    coupon(merchant, code="ONCE", max_uses=1)
    first = buy(wholesale, coupon_code="ONCE")
    assert Coupon.objects.get().uses == 1
    order_cancel(order_no=first.order_no)
    assert Coupon.objects.get().uses == 0
    second = buy(wholesale, coupon_code="ONCE", email="b@example.com", ip="10.0.0.2")  # usable again
    with time_machine.travel(second.expires_at + timedelta(seconds=1)):
        assert orders_expire_due() == 1
    assert Coupon.objects.get().uses == 0
    assert buy(wholesale, coupon_code="ONCE", email="c@example.com", ip="10.0.0.3").discount_minor == 150


def test_a_late_payment_takes_the_given_back_use_again(wholesale, merchant, epay_sim):
    coupon(merchant, code="ONCE", max_uses=1)
    order = buy(wholesale, coupon_code="ONCE")
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    with time_machine.travel(order.expires_at + timedelta(seconds=1)):
        orders_expire_due()
    assert Coupon.objects.get().uses == 0
    buy(wholesale, coupon_code="ONCE", email="b@example.com", ip="10.0.0.2")  # someone else took it meanwhile
    epay_sim.pay(payment.out_trade_no)
    payment_notification_handle(
        channel_code="epay", params=as_lists(signed_notify(epay_sim, payment.out_trade_no)), body=b""
    )
    assert Order.objects.get(pk=order.pk).state == "delivered"  # a provider's paid is never dropped
    used = Coupon.objects.get()
    assert (used.uses, used.max_uses) == (2, 2)  # both orders hold one; the record says so


def test_the_ledger_books_what_a_discounted_sale_was_paid(wholesale, merchant, epay_account, epay_sim):
    FeePlanFactory(merchant=merchant, agent_commission_bp=[], reserve_bp=0)  # 500 bp + 0.10 CNY
    coupon(merchant)
    order = buy(wholesale, qty=12, coupon_code="SAVE15")
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    assert payment.amount.amount_minor == 9180  # the provider is asked for what the buyer pays
    epay_sim.pay(payment.out_trade_no)
    payment_notification_handle(
        channel_code="epay", params=as_lists(signed_notify(epay_sim, payment.out_trade_no)), body=b""
    )
    sale = LedgerTransaction.objects.get(idempotency_key=f"sale:{payment.out_trade_no}")
    lines = {e.account.kind: e.amount_minor for e in sale.entries.select_related("account")}
    # 91.80 in: the platform's 5 % of it (4.59) + 0.10, the merchant the rest; the channel's fee is 0.
    assert lines == {"channel_clearing": 9180, "platform_revenue": -469, "merchant_pending": -8711}
    assert sum(lines.values()) == 0


def test_tiers_are_checked_when_a_product_is_saved(merchant, epay_account):
    product = make_product(merchant, secrets_count=0, price_minor=1000)
    for bad in (
        [{"min_quantity": 1, "unit_price_minor": 900}],  # from 2 up
        [{"min_quantity": 10, "unit_price_minor": 1000}],  # not below the list price
        [{"min_quantity": 10, "unit_price_minor": 800}, {"min_quantity": 20, "unit_price_minor": 900}],  # rising
        [{"min_quantity": 10, "unit_price_minor": 900}, {"min_quantity": 10, "unit_price_minor": 800}],  # twice
        [{"min_quantity": "10", "unit_price_minor": 900}],
        {"10": 900},
    ):
        product.price_tiers = bad
        with pytest.raises(ValidationError) as refused:
            product.full_clean()
        assert "price_tiers" in refused.value.message_dict, bad
    product.price_tiers = [{"min_quantity": 20, "unit_price_minor": 800}, {"min_quantity": 10, "unit_price_minor": 900}]
    product.full_clean()
    assert [t["min_quantity"] for t in product.price_tiers] == [10, 20]  # kept sorted
