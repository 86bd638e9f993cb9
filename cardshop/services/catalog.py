"""A merchant's products: made, changed and taken off sale (the merchant API's use cases; the admin edits the same
rows through its forms, with the same model validation)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from cardshop.locks import product_qs_locked
from cardshop.models import Product
from core.audit import audit_record
from core.errors import DomainError

# What a merchant may set on their product; the merchant, the slug's owner and the history are not theirs to set.
EDITABLE = (
    "name",
    "slug",
    "description",
    "price_minor",
    "currency",
    "delivery_kind",
    "reusable_secret",
    "custom_fields",
    "price_tiers",
    "min_quantity",
    "max_quantity",
    "is_active",
    "category",
    "sort_order",
)


def product_create(*, merchant_id: int, fields: dict[str, Any], actor: str) -> Product:
    """A new product of the merchant, checked as the admin checks it (Product.clean: a reusable product needs its
    secret; on sale only in a currency some enabled channel accepts). ValidationError names the field."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise DomainError("invalid_field", _("Unknown product fields: %s.") % ", ".join(sorted(unknown)))
    product = Product(merchant_id=merchant_id, **fields)
    with transaction.atomic(durable=True):
        product.full_clean()
        product.save()
        audit_record(actor=actor, action="product_created", target=f"product:{product.pk}")
    return product


def product_update(*, merchant_id: int, product_id: int, changes: dict[str, Any], actor: str) -> Product:
    """Change some of the merchant's product's fields; another merchant's product is not found."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise DomainError("invalid_field", _("Unknown product fields: %s.") % ", ".join(sorted(unknown)))
    with transaction.atomic(durable=True):
        product = product_qs_locked().filter(pk=product_id, merchant_id=merchant_id).first()
        if product is None:
            raise DomainError("not_found", _("No such product."))
        for name, value in changes.items():
            setattr(product, name, value)
        product.full_clean()
        if changes:
            product.save(update_fields=list(changes))
            audit_record(actor=actor, action="product_updated", target=f"product:{product.pk}", fields=sorted(changes))
    return product


def product_retire(*, merchant_id: int, product_id: int, actor: str) -> Product:
    """Take the product off sale for good from the API's view: it stays for its orders and history (never deleted),
    its unsold codes stay in stock. Retiring twice changes nothing."""
    return product_update(merchant_id=merchant_id, product_id=product_id, changes={"is_active": False}, actor=actor)
