"""Reads for the storefront. access_* functions are permission-scoped: None means 'not yours'."""

from __future__ import annotations

from django.contrib.auth.hashers import check_password
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from cardshop.models import CardSecret, DeliveryKind, Order, Product, SecretStatus

LOOKUP_MAX_ORDERS = 20


def _free_secret_count() -> Subquery:
    """Free secrets of the outer product, counted on the unsold rows only (sold history never scanned)."""
    free = (
        CardSecret.objects.filter(product=OuterRef("pk"), status__in=[SecretStatus.AVAILABLE, SecretStatus.RESERVED])
        .filter(Q(status=SecretStatus.AVAILABLE) | Q(reserved_until__lt=timezone.now()))
        .order_by()
        .values("product")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(free, output_field=IntegerField()), 0)


def product_list_on_sale() -> QuerySet[Product]:
    return Product.objects.filter(is_active=True).annotate(free_secrets=_free_secret_count())


def product_on_sale(*, slug: str) -> Product | None:
    return product_list_on_sale().filter(slug=slug).first()


def product_for_checkout(*, slug: str) -> Product | None:
    """The product a checkout form posts to, without the stock count (the reservation decides)."""
    return Product.objects.filter(slug=slug, is_active=True).first()


def product_stock(product: Product) -> int | None:
    """Free units, or None when the product never runs out (reusable or manual delivery)."""
    if product.delivery_kind != DeliveryKind.UNIQUE:
        return None
    if hasattr(product, "free_secrets"):
        return product.free_secrets
    return product_list_on_sale().get(pk=product.pk).free_secrets


def access_order_for_buyer(*, order_no: str, granted: list[str]) -> Order | None:
    """The order if this buyer session was granted it (at checkout, by lookup, or by the mailed link)."""
    if order_no not in granted:
        return None
    return Order.objects.select_related("product").filter(order_no=order_no).first()


def orders_for_lookup(*, order_no_or_email: str, query_password: str) -> list[Order]:
    """Orders matching an order number or email *and* the query password. Contact alone is never enough."""
    needle = order_no_or_email.strip()
    if not needle or not query_password:
        return []
    if "@" in needle:
        candidates = Order.objects.filter(email=needle.lower()).order_by("-created_at")[:LOOKUP_MAX_ORDERS]
    else:
        candidates = Order.objects.filter(order_no=needle)
    return [o for o in candidates.select_related("product") if check_password(query_password, o.query_password_hash)]
