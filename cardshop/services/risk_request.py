"""The checkout as risk sees it: what only the shop knows (the product's codes held by unpaid orders and still
free, the buyer's paid history, the product's usual amount), put into risk's RiskRequest.

It runs on every checkout with risk on, so it costs one prepared statement (core.prepared): three counts in one
round trip, ~0.25 ms here against ~1.3 ms for the same reads through the ORM. The usual amount moves slowly and is
cached per process for a minute.
"""

# ruff: noqa: S608 -- only table names from the models are formatted into the SQL; every value is a parameter.
from __future__ import annotations

import time

from cardshop.models import CardSecret, DeliveryKind, Order, OrderState, Product, SecretStatus
from core.money import Money
from core.prepared import prepared_cursor
from risk.contracts import RiskRequest

# The states in which a buyer has paid for an order before (risk's buyer_paid_before).
PAID_BEFORE = (OrderState.PAID, OrderState.DELIVERED, OrderState.UNDELIVERABLE)
USUAL_AMOUNT_TTL_SECONDS = 60.0
_usual_amounts: dict[int, tuple[float, int | None]] = {}

_SHOP_READS = (
    f"SELECT (SELECT count(*) FROM {CardSecret._meta.db_table} WHERE product_id = %s AND status = %s),"
    f" (SELECT count(*) FROM {CardSecret._meta.db_table} WHERE product_id = %s AND status = %s),"
    f" EXISTS (SELECT 1 FROM {Order._meta.db_table} WHERE email = %s AND state IN (%s, %s, %s))"
)


def risk_request_build(
    *, product: Product, quantity: int, email: str, ip: str, device: str, order_no: str
) -> RiskRequest:
    held, free, paid_before = _shop_reads(product, email)
    return RiskRequest(
        stage="checkout",
        amount=Money(product.price_minor * quantity, product.currency),
        quantity=quantity,
        email=email,
        ip=ip,
        device=device,
        product_ref=product.slug,
        merchant_id=product.merchant_id,
        product_stock=held + free,
        product_pending=held,
        usual_amount_minor=product_usual_amount(product.pk),
        buyer_paid_before=paid_before,
        order_no=order_no,
    )


def _shop_reads(product: Product, email: str) -> tuple[int, int, bool]:
    """(codes held unpaid, codes free, this email paid before); a product without unique codes holds none."""
    unique = product.delivery_kind == DeliveryKind.UNIQUE
    with prepared_cursor() as cursor:
        cursor.execute(
            _SHOP_READS,
            [product.pk, SecretStatus.RESERVED, product.pk, SecretStatus.AVAILABLE, email, *PAID_BEFORE],
        )
        held, free, paid_before = cursor.fetchone()
    return (held, free, bool(paid_before)) if unique else (0, 0, bool(paid_before))


def product_usual_amount(product_id: int) -> int | None:
    """The mean amount of the product's last 200 paid orders (None before its first), cached for a minute."""
    now = time.monotonic()
    hit = _usual_amounts.get(product_id)
    if hit is not None and now - hit[0] < USUAL_AMOUNT_TTL_SECONDS:
        return hit[1]
    recent = list(
        Order.objects.filter(product_id=product_id, state__in=PAID_BEFORE)
        .order_by("-pk")
        .values_list("amount_minor", flat=True)[:200]
    )
    usual = round(sum(recent) / len(recent)) if recent else None
    _usual_amounts[product_id] = (now, usual)
    return usual


def product_usual_amount_clear() -> None:
    _usual_amounts.clear()
