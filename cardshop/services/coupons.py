"""A merchant's coupons, made and switched off from its console or the API (operators use the admin). Using one is
the checkout's (cardshop.services.pricing)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from cardshop.models import Coupon, Product
from core.audit import audit_record
from core.errors import DomainError

EDITABLE = (
    "code",
    "kind",
    "amount_off_minor",
    "currency",
    "percent_off",
    "product_id",
    "max_uses",
    "per_buyer_limit",
    "valid_from",
    "valid_until",
)


def coupon_create(*, merchant_id: int, fields: dict[str, Any], actor: str) -> Coupon:
    """A new coupon of the merchant, checked by Coupon.clean (ValidationError names the field); a code the
    merchant already has is refused."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise DomainError("invalid_field", _("Unknown coupon fields: %s.") % ", ".join(sorted(unknown)))
    product_id = fields.get("product_id")
    if product_id is not None and not Product.objects.filter(pk=product_id, merchant_id=merchant_id).exists():
        raise DomainError("not_found", _("No such product."))
    coupon = Coupon(merchant_id=merchant_id, **fields)
    coupon.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic(durable=True):
            coupon.save()
            audit_record(actor=actor, action="coupon_created", target=f"coupon:{coupon.pk}", code=coupon.code)
    except IntegrityError:
        raise DomainError("coupon_code_taken", _("You already have a coupon with this code.")) from None
    return coupon


def coupon_deactivate(*, merchant_id: int, coupon_id: int, actor: str) -> Coupon:
    """Switch a coupon off: no new order may use it (orders holding it keep their discount). Twice changes nothing."""
    with transaction.atomic(durable=True):
        coupon = Coupon.objects.select_for_update().filter(pk=coupon_id, merchant_id=merchant_id).first()
        if coupon is None:
            raise DomainError("not_found", _("No such coupon."))
        if coupon.is_active:
            coupon.is_active = False
            coupon.save(update_fields=["is_active"])
            audit_record(actor=actor, action="coupon_deactivated", target=f"coupon:{coupon.pk}")
    return coupon
