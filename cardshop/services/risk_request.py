"""The checkout as risk sees it: what only the shop knows (the product's codes held by unpaid orders and not yet
sold, the buyer's paid history, the product's usual amount), put into risk's RiskRequest.

It runs on every checkout with risk on, so what moves fast (the held count, the paid history) is one prepared
statement (core.prepared), ~0.25 ms here against ~1.3 ms for the same reads through the ORM; what moves slowly
(the unsold count, the usual amount) is cached per process.
"""

# ruff: noqa: S608 -- only table names from the models are formatted into the SQL; every value is a parameter.
from __future__ import annotations

import time

from cardshop.models import CardSecret, DeliveryKind, Order, OrderState, Product, SecretStatus
from core.money import Money
from core.prepared import prepared_cursor
from risk.contracts import RiskRequest, ShopFacts

# The states in which a buyer has paid for an order before (risk's buyer_paid_before).
PAID_BEFORE = (OrderState.PAID, OrderState.DELIVERED, OrderState.UNDELIVERABLE)
USUAL_AMOUNT_TTL_SECONDS = 60.0
_usual_amounts: dict[int, tuple[float, int | None]] = {}

# A product's unsold codes (free or held) change only by imports, sales and withdrawals, not by reservations or
# their expiry, so a per-process copy of half a minute keeps the share held unpaid right even while a hoarder
# reserves: only the held count, which they move, is read on every checkout.
UNSOLD_TTL_SECONDS = 30.0
UNSOLD_COUNTED_UP_TO = 100_000  # beyond, the share held unpaid is too small to matter: the count stops there
_unsold: dict[int, tuple[float, int]] = {}

_SHOP_READS = (
    f"SELECT (SELECT count(*) FROM {CardSecret._meta.db_table} WHERE product_id = %s AND status = %s),"
    f" EXISTS (SELECT 1 FROM {Order._meta.db_table} WHERE email = %s AND state IN (%s, %s, %s))"
)
_UNSOLD = (
    f"SELECT count(*) FROM (SELECT 1 FROM {CardSecret._meta.db_table} WHERE product_id = %s AND status IN (%s, %s)"
    " LIMIT %s) AS unsold"
)


def risk_request_build(
    *,
    product: Product,
    quantity: int,
    email: str,
    ip: str,
    device: str,
    order_no: str,
    stage: str = "checkout",
    amount: Money | None = None,
) -> RiskRequest:
    """The checkout (or payment start, with the order's `amount`) as risk sees it, but for what only the shop
    knows: `shop_facts` reads that, while risk's counters are on their way (risk_assess(facts=...))."""
    return RiskRequest(
        stage=stage,
        amount=amount or Money(product.price_minor * quantity, product.currency),
        quantity=quantity,
        email=email,
        ip=ip,
        device=device,
        product_ref=product.slug,
        merchant_id=product.merchant_id,
        order_no=order_no,
    )


def shop_facts(*, product: Product, email: str) -> ShopFacts:
    held, paid_before = _shop_reads(product, email)
    stock = max(product_unsold(product.pk), held) if product.delivery_kind == DeliveryKind.UNIQUE else 0
    return ShopFacts(
        product_stock=stock,
        product_pending=held,
        usual_amount_minor=product_usual_amount(product.pk),
        buyer_paid_before=paid_before,
    )


def _shop_reads(product: Product, email: str) -> tuple[int, bool]:
    """(codes held by unpaid orders, this email paid before); a product without unique codes holds none."""
    with prepared_cursor() as cursor:
        cursor.execute(_SHOP_READS, [product.pk, SecretStatus.RESERVED, email, *PAID_BEFORE])
        held, paid_before = cursor.fetchone()
    return (held if product.delivery_kind == DeliveryKind.UNIQUE else 0), bool(paid_before)


def product_unsold(product_id: int) -> int:
    """The product's codes not yet sold (free or held), cached for UNSOLD_TTL_SECONDS."""
    now = time.monotonic()
    hit = _unsold.get(product_id)
    if hit is not None and now - hit[0] < UNSOLD_TTL_SECONDS:
        return hit[1]
    with prepared_cursor() as cursor:
        cursor.execute(_UNSOLD, [product_id, SecretStatus.AVAILABLE, SecretStatus.RESERVED, UNSOLD_COUNTED_UP_TO])
        (unsold,) = cursor.fetchone()
    _unsold[product_id] = (now, unsold)
    return unsold


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


def shop_caches_clear() -> None:
    """Forget the cached unsold counts and usual amounts (tests; a process sees changes within their TTL)."""
    _usual_amounts.clear()
    _unsold.clear()
