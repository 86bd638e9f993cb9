"""Reads for the storefront. access_* functions are permission-scoped: None means 'not yours'."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX, check_password
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from cardshop.models import (
    ApiKey,
    CardSecret,
    Category,
    Coupon,
    DeliveryKind,
    MerchantAlertSettings,
    MerchantMember,
    MerchantShopPage,
    Order,
    OrderState,
    Product,
    ProductImage,
    SecretStatus,
    ShopAnnouncement,
    WebhookEndpoint,
    WebhookEvent,
)
from cardshop.payment_methods import method_label
from core.models import Merchant
from core.money import Money
from core.queries import one_or_none
from payments import facade as payments
from payments.contracts import RefundStatus

LOOKUP_MAX_ORDERS = 20
SEARCH_MAX_LENGTH = 100
# The image's bytes stay in the database until its own URL asks for them.
_IMAGE_BYTES = ("image__full_jpeg", "image__thumb_jpeg")


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


def product_list_for_catalog(
    *, category: Category | None = None, query: str = "", merchant_id: int | None = None
) -> QuerySet[Product]:
    """What the catalog lists: on sale, not in a hidden category, optionally one category's and/or matching a
    search (case-insensitive, in the name or the description); a merchant's page, only that merchant's."""
    products = (
        product_list_on_sale()
        .filter(Q(category__isnull=True) | Q(category__is_active=True))
        .select_related("category", "image")
        .defer(*_IMAGE_BYTES)
    )
    if merchant_id is not None:
        products = products.filter(merchant_id=merchant_id)
    if category is not None:
        products = products.filter(category=category)
    query = query.strip()[:SEARCH_MAX_LENGTH]
    if query:
        products = products.filter(Q(name__icontains=query) | Q(description__icontains=query))
    return products


def category_list_for_catalog(*, merchant_id: int | None = None) -> list[Category]:
    """The catalog's tabs: shown categories that list at least one product on sale (of the merchant, on its page)."""
    filters = {"products__merchant_id": merchant_id} if merchant_id is not None else {}
    return list(
        Category.objects.filter(is_active=True, products__is_active=True, **filters)
        .distinct()
        .order_by("sort_order", "pk")
    )


def merchant_for_shop_page(*, slug: str) -> tuple[Merchant, str] | None:
    """An active merchant and its page's announcement ("" when none), by the merchant's slug; None: no such page."""
    merchant = Merchant.objects.filter(slug=slug, is_active=True).first()
    if merchant is None:
        return None
    text = MerchantShopPage.objects.filter(merchant=merchant).values_list("announcement", flat=True).first()
    return merchant, (text or "").strip()


def category_for_catalog(*, slug: str) -> Category | None:
    return Category.objects.filter(slug=slug, is_active=True).first()


def product_on_sale(*, slug: str) -> Product | None:
    return product_list_on_sale().filter(slug=slug).select_related("image", "merchant").defer(*_IMAGE_BYTES).first()


def product_image_version(*, slug: str) -> str | None:
    """The digest of an on-sale product's image (its ETag), without loading the bytes; None: no image."""
    return (
        ProductImage.objects.filter(
            product__slug=slug,
            product__is_active=True,
        )
        .values_list("digest", flat=True)
        .first()
    )


def product_image_bytes(*, slug: str, thumb: bool) -> tuple[bytes, str] | None:
    """One of an on-sale product's JPEGs and its digest, or None."""
    field = "thumb_jpeg" if thumb else "full_jpeg"
    row = (
        ProductImage.objects.filter(
            product__slug=slug,
            product__is_active=True,
        )
        .values_list(field, "digest")
        .first()
    )
    return (bytes(row[0]), row[1]) if row else None


def shop_announcement_text() -> str:
    """The announcement buyers see, or "" when it is switched off or empty."""
    row = ShopAnnouncement.objects.filter(is_active=True).values_list("text", flat=True).first()
    return (row or "").strip()


def payment_methods_for(*, product: Product, quantity: int) -> list[tuple[str, str]]:
    """(method, label) the buyer may pick for this many of the product: what routing would take for the amount."""
    options = payments.payment_options(
        currency=product.currency,
        amount_minor=product.price_minor * quantity,
        merchant_id=product.merchant_id,
        product_ref=product.slug,
    )
    return [(o.method, method_label(o.method)) for o in options]


def product_list_for_merchant(*, merchant_id: int) -> QuerySet[Product]:
    """Every product of one merchant, on sale or not, with its free stock (the merchant API's reads)."""
    return (
        Product.objects.filter(merchant_id=merchant_id)
        .select_related("category")
        .annotate(free_secrets=_free_secret_count())
    )


def products_low_on_stock(*, product_ids: set[int], threshold: int) -> list[Product]:
    """Of these products, those of unique codes on sale with at most `threshold` free codes, not announced low
    since their last upload (`free_secrets` annotated)."""
    return list(
        Product.objects.filter(
            pk__in=product_ids,
            delivery_kind=DeliveryKind.UNIQUE,
            is_active=True,
            low_stock_announced_at__isnull=True,
        )
        .annotate(free_secrets=_free_secret_count())
        .filter(free_secrets__lte=threshold)
        .order_by("pk")
    )


def order_list_for_merchant(
    *,
    merchant_id: int,
    state: str = "",
    email: str = "",
    created_gte: dt.datetime | None = None,
    created_lt: dt.datetime | None = None,
) -> QuerySet[Order]:
    """One merchant's orders, filtered as the merchant API's list asks (every filter optional)."""
    orders = Order.objects.filter(merchant_id=merchant_id).select_related("coupon")
    if state:
        orders = orders.filter(state=state)
    if email:
        orders = orders.filter(email=email.strip().lower())
    if created_gte is not None:
        orders = orders.filter(created_at__gte=created_gte)
    if created_lt is not None:
        orders = orders.filter(created_at__lt=created_lt)
    return orders


def merchant_member_for(*, user) -> MerchantMember | None:
    """The console membership of a signed-in user of an active merchant (with its merchant), or None."""
    if not getattr(user, "is_authenticated", False):
        return None
    return MerchantMember.objects.filter(user=user, merchant__is_active=True).select_related("merchant").first()


def coupons_for_merchant(*, merchant_id: int) -> QuerySet[Coupon]:
    return Coupon.objects.filter(merchant_id=merchant_id).order_by("-pk")


def api_keys_for_merchant(*, merchant_id: int) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(merchant_id=merchant_id).order_by("-pk")


def alert_settings_for_merchant(*, merchant_id: int) -> MerchantAlertSettings | None:
    return MerchantAlertSettings.objects.filter(merchant_id=merchant_id).first()


def webhook_endpoints_for_merchant(*, merchant_id: int) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(merchant_id=merchant_id)


def webhook_events_for_merchant(*, merchant_id: int, type: str = "") -> QuerySet[WebhookEvent]:
    events = WebhookEvent.objects.filter(merchant_id=merchant_id)
    return events.filter(type=type) if type else events


def product_for_checkout(*, slug: str) -> Product | None:
    """The product a checkout form posts to, without the stock count (the reservation decides)."""
    return one_or_none(Product.objects.filter(slug=slug, is_active=True).select_related("merchant"))


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
    return one_or_none(Order.objects.select_related("product").filter(order_no=order_no))


def order_state_for_buyer(*, order_no: str, granted: list[str]) -> str | None:
    """The state of an order this buyer session was granted (the order page's poll), one column read."""
    if order_no not in granted:
        return None
    return one_or_none(Order.objects.filter(order_no=order_no).values_list("state", flat=True))


def orders_for_lookup(*, order_no_or_email: str, query_password: str) -> list[Order]:
    """Orders matching an order number or email *and* the query password. Contact alone is never enough."""
    needle = order_no_or_email.strip()
    if not needle or not query_password:
        return []
    # An order made with no query password (the merchant API's) is never found here, and is not checked: Django
    # would run its full staff hasher on an unusable hash to even out the timing, once per such order.
    orders = Order.objects.exclude(query_password_hash__startswith=UNUSABLE_PASSWORD_PREFIX)
    if "@" in needle:
        candidates = orders.filter(email=needle.lower()).order_by("-created_at")[:LOOKUP_MAX_ORDERS]
    else:
        candidates = orders.filter(order_no=needle)
    return [o for o in candidates.select_related("product") if check_password(query_password, o.query_password_hash)]


@dataclass(frozen=True)
class RefundForBuyer:
    """Money going back to the buyer, as their order page and mail tell it."""

    amount: Money
    requested_at: dt.datetime | None  # None only for a refund older than its timeline event
    completed_at: dt.datetime | None  # None while the channel has not confirmed it
    second_payment: bool = False  # the refund of a payment made after the order was already paid


def order_refund_for_buyer(*, order: Order) -> RefundForBuyer | None:
    """The order's own refund while it is refunding or refunded, else None (access checked by the caller).

    The amount is the refund's as payments holds it; the dates are the order's (timeline and refunded_at).
    """
    partial = order.state not in (OrderState.REFUNDING, OrderState.REFUNDED)
    kinds = ["partial_refund_requested"] if partial else ["refund_requested", "partial_refund_requested"]
    asked = list(order.events.filter(kind__in=kinds).order_by("created_at", "pk"))
    if partial and not asked:
        return None
    # Every refund of the payment that paid it, in parts or whole, not refused: what goes (or went) back in all.
    refunds = [
        r
        for r in payments.refunds_for_reference(reference=order.order_no)
        if r.out_trade_no == order.paid_by and r.status != RefundStatus.FAILED
    ]
    amount = sum((r.amount for r in refunds[1:]), refunds[0].amount) if refunds else order.amount
    done = bool(refunds) and all(r.status == RefundStatus.SUCCEEDED for r in refunds)
    last_part = order.events.filter(kind="partially_refunded").order_by("-created_at", "-pk").first()
    if partial:
        completed = last_part.created_at if done and last_part else None
    else:
        completed = order.refunded_at if order.state == OrderState.REFUNDED else None
    return RefundForBuyer(amount=amount, requested_at=asked[-1].created_at if asked else None, completed_at=completed)


def second_payment_refunds_for_buyer(*, order: Order) -> list[RefundForBuyer]:
    """Refunds of second payments of the order (paid twice: the extra one is returned automatically), oldest
    first. A refund the channel refused is left out: an operator returns that money by hand."""
    if not order.paid_by:
        return []  # never paid: no second payment either
    events = list(
        order.events.filter(kind__in=["extra_payment", "extra_payment_refund_succeeded"]).order_by("created_at", "pk")
    )
    done = {e.detail.get("refund_no"): e.created_at for e in events if e.kind == "extra_payment_refund_succeeded"}
    refunds = []
    for event in events:
        refund_no = event.detail.get("refund_no")
        if event.kind != "extra_payment" or not refund_no:
            continue  # held for an operator: no refund to tell of yet
        view = payments.refund_view(refund_no=refund_no)
        if view.status == RefundStatus.FAILED:
            continue
        completed_at = done.get(refund_no) if view.status == RefundStatus.SUCCEEDED else None
        refunds.append(
            RefundForBuyer(
                amount=view.amount, requested_at=event.created_at, completed_at=completed_at, second_payment=True
            )
        )
    return refunds
