"""Checkout: create an order and reserve its stock; start its payment after commit."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from cardshop.locks import buyer_lock
from cardshop.models import DeliveryKind, Order, OrderState, Product
from cardshop.services.delivery import card_secrets_reserve
from cardshop.services.events import order_event_add
from core import ids
from core.client_ip import ip_group
from core.errors import DomainError
from core.money import MoneyError, currency_validate
from payments import facade as payments
from payments.contracts import PaymentRequest, PaymentView
from settlement import facade as settlement

QUERY_PASSWORD_MIN = 6
QUERY_PASSWORD_MAX = 64


def _validate(product: Product, quantity: int, email: str, query_password: str, custom_input: dict[str, str]) -> dict:
    if not product.is_active:
        raise DomainError("not_on_sale", _("This product is not on sale."))
    if not (product.min_quantity <= quantity <= product.max_quantity):
        raise DomainError(
            "quantity",
            _("Quantity must be between %(min)d and %(max)d.")
            % {"min": product.min_quantity, "max": product.max_quantity},
        )
    try:
        validate_email(email)
    except ValidationError:
        raise DomainError("email", _("Enter a valid email address.")) from None
    if len(query_password) < QUERY_PASSWORD_MIN or len(query_password) > QUERY_PASSWORD_MAX:
        raise DomainError("query_password", _("The query password needs 6 to 64 characters."))
    cleaned: dict[str, str] = {}
    if product.delivery_kind == DeliveryKind.MANUAL:
        for f in product.custom_fields:
            value = str(custom_input.get(f["name"], "")).strip()[:500]
            if f.get("required") and not value:
                raise DomainError("custom_field", _("Please fill in %(label)s.") % {"label": f.get("label", f["name"])})
            cleaned[f["name"]] = value
    return cleaned


def product_currency_check(product: Product) -> None:
    """Refuse, before anything is reserved, a product no buyer could pay for: its currency is not one the money
    module supports, or no enabled channel account takes it (e.g. its channel was disabled after it went on sale)."""
    try:
        currency_validate(product.currency)
    except MoneyError:
        raise DomainError(
            "currency_unsupported",
            _("This product cannot be bought: its currency %(currency)s is not supported.")
            % {"currency": product.currency},
        ) from None
    if not payments.payment_options(currency=product.currency):
        raise DomainError(
            "currency_unserved",
            _("This product cannot be paid for at the moment: no payment method accepts %(currency)s.")
            % {"currency": product.currency},
        )


class TooManyPending(DomainError):
    """The pending cap refused a checkout. `order_no` names the buyer's own unpaid order, and only when the cap
    that refused is the email's: a cap reached through a shared IP never shows one buyer's order to another."""

    def __init__(self, message: str, *, scope: str, order_no: str = ""):
        super().__init__("too_many_pending", message)
        self.scope = scope
        self.order_no = order_no


def pending_caps() -> tuple[int, int]:
    """(per email, per IP group). CARDSHOP_MAX_PENDING_PER_BUYER is the old single cap: when set it still sizes
    both, as before; unset it to size them separately (an IP is shared by a NAT, so its cap is the larger)."""
    legacy = getattr(settings, "CARDSHOP_MAX_PENDING_PER_BUYER", None)
    if legacy is not None:
        return legacy, legacy
    return settings.CARDSHOP_MAX_PENDING_PER_EMAIL, settings.CARDSHOP_MAX_PENDING_PER_IP


def _pending_cap_check(*, email: str, ip_key: str, now: datetime) -> None:
    """Runs under the buyer lock of both the email and the IP group, so the counts cannot race."""
    per_email, per_ip = pending_caps()
    unpaid = Order.objects.filter(state=OrderState.PENDING, expires_at__gt=now)
    own = list(unpaid.filter(email=email).order_by("-created_at").values_list("order_no", flat=True)[:per_email])
    if len(own) >= per_email:
        raise TooManyPending(
            ngettext(
                "You already have an unpaid order: %(order_no)s. Pay or cancel it first.",
                "You already have %(count)d unpaid orders, the latest %(order_no)s. Pay or cancel one first.",
                len(own),
            )
            % {"count": len(own), "order_no": own[0]},
            scope="email",
            order_no=own[0],
        )
    if ip_key:
        network = unpaid.filter(buyer_ip_group=ip_key).count()
        if network >= per_ip:
            raise TooManyPending(
                ngettext(
                    "Your network already has %(count)d unpaid order. Please try again in a few minutes.",
                    "Your network already has %(count)d unpaid orders. Please try again in a few minutes.",
                    network,
                )
                % {"count": network},
                scope="ip",
            )


def order_create(
    *,
    product_id: int,
    quantity: int,
    email: str,
    query_password: str,
    buyer_ip: str | None,
    custom_input: dict[str, Any] | None = None,
    language: str = "",
) -> Order:
    """Create a PENDING order and reserve its stock in one transaction, or change nothing."""
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        raise DomainError("not_found", _("No such product."))
    email = email.strip().lower()
    cleaned = _validate(product, quantity, email, query_password, custom_input or {})
    product_currency_check(product)
    password_hash = make_password(query_password, hasher="pbkdf2_sha256_query")
    now = timezone.now()
    with transaction.atomic(durable=True):
        # The cap counts a buyer's network (an IPv6 /64), not one address they can rotate within it.
        ip_key = ip_group(buyer_ip or "")
        buyer_lock(f"email:{email}", f"ip:{ip_key}" if ip_key else "")
        _pending_cap_check(email=email, ip_key=ip_key, now=now)
        order = Order.objects.create(
            order_no=ids.order_no(),
            merchant_id=product.merchant_id,
            product=product,
            quantity=quantity,
            unit_price_minor=product.price_minor,
            amount_minor=product.price_minor * quantity,
            currency=product.currency,
            email=email,
            query_password_hash=password_hash,
            buyer_ip=buyer_ip,
            buyer_ip_group=ip_key,
            custom_input=cleaned,
            language=language if language in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE,
            expires_at=now + timedelta(seconds=settings.CARDSHOP_ORDER_TTL_SECONDS),
        )
        if product.delivery_kind == DeliveryKind.UNIQUE:
            if card_secrets_reserve(order=order, count=quantity) < quantity:
                raise DomainError("out_of_stock", _("Not enough stock left for this quantity."))
        order_event_add(order=order, kind="created", quantity=quantity, amount=order.amount_minor)
    return order


def order_payment_start(
    *, order_no: str, client_ip: str, method: str = "alipay", channel_code: str = ""
) -> PaymentView:
    """Ask payments for the order's pay page data. Runs after the checkout commit: no lock held.

    The buyer chooses the method (Alipay, WeChat Pay, card, bank); routing chooses the channel account, unless
    `channel_code` names one. A payment already live for the order is returned as it is: a QR the buyer may
    already have scanned is never replaced behind their back.
    """
    order = Order.objects.select_related("product").get(order_no=order_no)
    if order.state != OrderState.PENDING or order.expires_at <= timezone.now():
        raise DomainError("not_payable", _("This order can no longer be paid."))
    base = settings.CARDSHOP_PUBLIC_URL
    return payments.payment_start(
        request=PaymentRequest(
            reference=order.order_no,
            amount=order.amount,
            subject=order.product.name,
            notify_url=base + reverse("notify", args=["CHANNEL"]).replace("CHANNEL", "{channel}"),
            return_url=base + reverse("order_detail", args=[order.order_no]),
            client_ip=client_ip,
            channel_code=channel_code,
            method=method,
            merchant_id=order.merchant_id,
            product_ref=order.product.slug,
            expires_at=order.expires_at,
            split_at_provider=settlement.plan_splits_at_provider(
                merchant_id=order.merchant_id, currency=order.amount.currency
            ),
        )
    )


def order_payment_switch(*, order_no: str, client_ip: str, method: str) -> PaymentView:
    """The buyer picks another method on the pay page. The old trade is closed at the provider first (the one
    payable trade rule); only then is a new one started. Refused, changing nothing, while the old one may
    still be paid: the buyer keeps paying it, or waits."""
    if not payments.payments_close_for_switch(reference=order_no):
        raise DomainError(
            "switch_refused",
            _("This payment can't be changed right now: pay it as shown, or wait until the order expires."),
        )
    return order_payment_start(order_no=order_no, client_ip=client_ip, method=method)
