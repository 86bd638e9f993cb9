"""Every select_for_update on cardshop models.

Lock order wherever several are held: Payment, Order, CardSecret, Coupon. A callback finds its order through
the payment it locks first, so any future path holding both (refunds) must take the payment first too.
"""

from __future__ import annotations

import hashlib

from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from cardshop.models import CardSecret, Coupon, Order, Product, SecretStatus


def order_qs_locked() -> QuerySet[Order]:
    return Order.objects.order_by("pk").select_for_update(of=("self",))


def product_qs_locked() -> QuerySet[Product]:
    return Product.objects.order_by("pk").select_for_update(of=("self",))


def card_secrets_free_locked(*, product_id: int, count: int) -> list[CardSecret]:
    """Take up to `count` free secrets, skipping rows another checkout holds.

    A reservation whose time has passed counts as free even before the expiry task releases it.
    """
    free = Q(status=SecretStatus.AVAILABLE) | Q(status=SecretStatus.RESERVED, reserved_until__lt=timezone.now())
    qs = (
        CardSecret.objects.filter(free, product_id=product_id)
        .order_by("pk")
        .select_for_update(skip_locked=True, of=("self",))
        .only("pk", "status", "order_id", "reserved_until")
    )
    return list(qs[:count])


def card_secrets_of_order_locked(*, order_id: int) -> list[CardSecret]:
    return list(
        CardSecret.objects.filter(order_id=order_id)
        .order_by("pk")
        .select_for_update(of=("self",))
        .only("pk", "status", "order_id", "reserved_until", "sold_at")
    )


def coupon_locked(*, merchant_id: int, code: str) -> Coupon | None:
    """The merchant's coupon, locked until commit: checkouts using one coupon queue here, so `max_uses` is exact.
    Taken after the checkout's card secrets (Order, CardSecret, Coupon), as expiry gives a use back after its
    secrets."""
    return Coupon.objects.filter(merchant_id=merchant_id, code=code).select_for_update(of=("self",)).first()


def merchant_stock_lock(merchant_id: int) -> None:
    """Serialise stock imports across all of one merchant's products until commit, so the cross-product
    duplicate check is exact. Advisory, so checkouts of their products are not blocked."""
    _advisory_xact_locks(f"stock-import:merchant:{merchant_id}")


def buyer_lock(*keys: str) -> None:
    """Serialise checkouts by the same buyer (email, IP) until commit, so the pending-order cap is exact.

    PostgreSQL transaction-level advisory locks, taken in sorted order (no deadlock between two buyers
    sharing an IP). SQLite needs nothing: its write transactions are already serial.
    """
    _advisory_xact_locks(*keys)


def _advisory_xact_locks(*keys: str) -> None:
    if connection.vendor != "postgresql":
        return
    ids = sorted(
        {int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "big", signed=True) for k in keys if k}
    )
    if not ids:
        return
    # One statement for all: PostgreSQL evaluates the select list left to right, so they are taken in sorted order.
    with connection.cursor() as cur:
        cur.execute("SELECT " + ", ".join(["pg_advisory_xact_lock(%s)"] * len(ids)), ids)
