"""What an order costs: the unit price its quantity earns (the product's list price, or the highest wholesale tier
reached) and what a coupon takes off, and a coupon's use reserved by its order and given back when the order
lapses unpaid.

Worked example (tests/cardshop/test_pricing.py): list price 10.00, tiers 10+ at 9.00 and 50+ at 8.00; 12 units
are 9.00 each, 108.00; a 15 % coupon takes 16.20 off; the buyer pays 91.80 and the ledger books 91.80.

A percent discount is rounded half up to the minor unit. A discount never takes an order below one minor unit: a
payment of nothing cannot be taken, so the discount is capped there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Case, F, PositiveIntegerField, When
from django.utils import timezone
from django.utils.translation import gettext as _

from cardshop.locks import coupon_locked
from cardshop.models import Coupon, CouponKind, Order, OrderState, Product
from core.errors import DomainError

# A coupon's order still holds its use while it waits for payment or review, and keeps it once paid.
HOLDING_STATES = [s for s in OrderState.values if s not in (OrderState.EXPIRED, OrderState.CANCELLED)]


@dataclass(frozen=True)
class Price:
    list_price_minor: int  # the product's unit list price
    unit_price_minor: int  # what one unit costs at this quantity
    discount_minor: int
    amount_minor: int  # unit price x quantity - discount: what the buyer pays
    currency: str
    coupon: Coupon | None = None


def unit_price_for(product: Product, quantity: int) -> int:
    """The list price, or the cheapest tier the quantity reaches (tiers fall as quantities grow: Product.clean)."""
    reached = [t["unit_price_minor"] for t in product.price_tiers or [] if t["min_quantity"] <= quantity]
    return min([product.price_minor, *reached])


def coupon_discount(coupon: Coupon, subtotal_minor: int) -> int:
    if coupon.kind == CouponKind.PERCENT:
        off = (subtotal_minor * coupon.percent_off + 50) // 100
    else:
        off = coupon.amount_off_minor or 0
    return max(0, min(off, subtotal_minor - 1))


def order_price(product: Product, quantity: int, *, coupon: Coupon | None = None) -> Price:
    unit = unit_price_for(product, quantity)
    subtotal = unit * quantity
    discount = coupon_discount(coupon, subtotal) if coupon is not None else 0
    return Price(
        list_price_minor=product.price_minor,
        unit_price_minor=unit,
        discount_minor=discount,
        amount_minor=subtotal - discount,
        currency=product.currency,
        coupon=coupon,
    )


def normalise_code(code: str) -> str:
    return (code or "").strip().upper()[:32]


def coupon_reserve(*, code: str, product: Product, email: str, now: datetime | None = None) -> Coupon:
    """In the checkout's transaction: lock the merchant's coupon `code`, check it may be used on this product by
    this buyer now, and count the use (its order holds it). Refused with a DomainError, having changed nothing."""
    now = now or timezone.now()
    coupon = coupon_locked(merchant_id=product.merchant_id, code=normalise_code(code))
    refused = DomainError("coupon_invalid", _("This coupon code is not valid."))
    if coupon is None or not coupon.is_active:
        raise refused
    if coupon.product_id is not None and coupon.product_id != product.pk:
        raise DomainError("coupon_not_for_product", _("This coupon is not for this product."))
    if (coupon.valid_from and now < coupon.valid_from) or (coupon.valid_until and now >= coupon.valid_until):
        raise DomainError("coupon_expired", _("This coupon is not valid at this time."))
    if coupon.kind == CouponKind.FIXED and coupon.currency != product.currency:
        raise DomainError("coupon_not_for_product", _("This coupon is not for this product."))
    if coupon.max_uses is not None and coupon.uses >= coupon.max_uses:
        raise DomainError("coupon_used_up", _("This coupon has been used up."))
    if coupon.per_buyer_limit is not None:
        used = Order.objects.filter(coupon=coupon, email=email, state__in=HOLDING_STATES).count()
        if used >= coupon.per_buyer_limit:
            raise DomainError("coupon_buyer_limit", _("You have already used this coupon."))
    return coupon


def coupon_use_count(coupon: Coupon) -> None:
    """Count one use (after every refusal: the caller's first write)."""
    Coupon.objects.filter(pk=coupon.pk).update(uses=F("uses") + 1)


def coupon_give_back(*, order: Order) -> bool:
    """The order lapsed unpaid (expired, cancelled): its coupon's use is given back, in the caller's transaction."""
    if order.coupon_id is None:
        return False
    return bool(Coupon.objects.filter(pk=order.coupon_id, uses__gt=0).update(uses=F("uses") - 1))


def coupon_take_again(*, order: Order) -> None:
    """A late payment of a lapsed order: the discount was paid for, so the use counts again, even past the limit
    (the money is taken; refusing it would help nobody). A coupon at its limit has the limit raised by one, so
    the CHECK (uses <= max uses) holds and the record stays true."""
    if order.coupon_id is None:
        return
    at_limit = When(max_uses__isnull=False, uses__gte=F("max_uses"), then=F("max_uses") + 1)
    raised = Case(at_limit, default=F("max_uses"), output_field=PositiveIntegerField())
    Coupon.objects.filter(pk=order.coupon_id).update(uses=F("uses") + 1, max_uses=raised)
