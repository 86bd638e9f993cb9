"""Stock reservation, delivery of card secrets, and audited reveals."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_fsm import can_proceed

from cardshop.locks import card_secrets_free_locked, card_secrets_of_order_locked
from cardshop.models import CardSecret, DeliveryKind, Order, OrderState, SecretRevealLog, SecretStatus
from cardshop.services.events import OrderWrite
from core.audit import audit_record
from core.errors import DomainError

log = logging.getLogger(__name__)


def card_secrets_reserve(*, order: Order, count: int) -> int:
    """Reserve up to `count` free secrets for `order` until it expires; returns how many were taken."""
    taken = card_secrets_free_locked(product_id=order.product_id, count=count)
    card_secrets_hold(order=order, secrets=taken)
    return len(taken)


def card_secrets_hold(*, order: Order, secrets: list[CardSecret]) -> None:
    """Reserve for `order`, until it expires, free secrets the caller has locked (card_secrets_free_locked)."""
    if secrets:
        CardSecret.objects.filter(pk__in=[s.pk for s in secrets]).update(
            status=SecretStatus.RESERVED, order=order, reserved_until=order.expires_at
        )


def card_secrets_release(*, order: Order) -> int:
    """Return the order's still-reserved secrets to stock (expiry, cancel)."""
    held = [s.pk for s in card_secrets_of_order_locked(order_id=order.pk) if s.status == SecretStatus.RESERVED]
    return CardSecret.objects.filter(pk__in=held).update(status=SecretStatus.AVAILABLE, order=None, reserved_until=None)


def order_deliver_paid(*, write: OrderWrite, actor: str = "system") -> bool:
    """Deliver a locked PAID (or UNDELIVERABLE) order if its goods can be handed over now.

    Unique secrets: the order's reservation is sold; whatever another checkout took after the
    reservation lapsed is re-reserved from free stock. Too little stock leaves the order
    UNDELIVERABLE for an operator, with nothing half-sold. Manual goods wait in PAID.
    Changes are collected in `write`; the caller flushes it.
    """
    order = write.order
    kind = order.product.delivery_kind
    if kind == DeliveryKind.MANUAL:
        write.event("awaiting_manual_delivery", actor)
        return False
    if kind == DeliveryKind.UNIQUE:
        mine = card_secrets_of_order_locked(order_id=order.pk)
        already_sold = sum(1 for s in mine if s.status == SecretStatus.SOLD)
        missing = order.quantity - len(mine)
        if missing > 0:
            missing -= card_secrets_reserve(order=order, count=missing)
        if missing > 0:
            card_secrets_release(order=order)
            if can_proceed(order.mark_undeliverable):
                order.mark_undeliverable()
                write.changed("state")
            write.event("undeliverable", actor, missing=missing)
            log.warning("order %s paid but %d secrets short", order.order_no, missing)
            return False
        sold = (
            CardSecret.objects.filter(order=order)
            .exclude(status=SecretStatus.SOLD)
            .update(status=SecretStatus.SOLD, sold_at=timezone.now(), reserved_until=None)
        )
        if already_sold + sold != order.quantity:
            raise DomainError("delivery_mismatch", "sold secrets do not match the quantity")
    else:
        sold = 0
    order.deliver()
    write.changed(*Order.DELIVERY_FIELDS)
    write.event("delivered", actor, secrets=sold)
    return True


def order_secrets_for_buyer(*, order: Order) -> list[str]:
    """The delivered goods as text, for the buyer's order page (access checked by the caller).

    Read from what was frozen on the order at delivery, never from the product as it is today.
    """
    if order.state != OrderState.DELIVERED:
        return []
    kind = order.delivered_kind
    if kind == DeliveryKind.UNIQUE:
        return [s.secret for s in CardSecret.objects.filter(order=order, status=SecretStatus.SOLD).order_by("pk")]
    if kind == DeliveryKind.REUSABLE:
        return [order.delivered_text] if order.delivered_text else []
    return [order.delivery_note] if order.delivery_note else []


def order_secrets_for_merchant(*, merchant_id: int, order_no: str, actor: str) -> list[str]:
    """The delivered goods of one of the merchant's orders, for the merchant API (scope `secrets`); every read is
    audited with who read how many. Another merchant's order is not found."""
    with transaction.atomic(durable=True):
        order = Order.objects.filter(merchant_id=merchant_id, order_no=order_no).first()
        if order is None:
            raise DomainError("not_found", _("No such order."))
        secrets = order_secrets_for_buyer(order=order)
        audit_record(actor=actor, action="order_secrets.api_read", target=f"order:{order_no}", count=len(secrets))
    return secrets


def card_secret_reveal(*, secret_id: int, user, reason: str = "") -> str:
    """Decrypt one secret for an operator and record who looked."""
    with transaction.atomic():
        secret = CardSecret.objects.get(pk=secret_id)
        SecretRevealLog.objects.create(user=user, secret=secret, reason=reason[:200])
        audit_record(
            actor=user.get_username(), action="card_secret.reveal", target=f"cardsecret:{secret_id}", reason=reason
        )
    log.info("secret #%s revealed to %s", secret_id, user)
    return secret.secret
