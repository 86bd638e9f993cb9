"""Card secrets: encrypted at rest, deduplicated by keyed hashes, reserved then sold (or withdrawn unsold)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from cardshop.models.catalog import Product
from core.fields import EncryptedTextField


class SecretStatus(models.TextChoices):
    AVAILABLE = "available", _("available")
    RESERVED = "reserved", _("reserved")
    SOLD = "sold", _("sold")
    WITHDRAWN = "withdrawn", _("withdrawn (never sold)")


class CardSecret(models.Model):
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="secrets", verbose_name=_("product"))
    secret = EncryptedTextField(_("secret"))
    secret_hash = models.CharField(max_length=64, editable=False)
    # Keyed hash scoped to the product's merchant: finds the same secret imported into any of their products.
    merchant_hash = models.CharField(max_length=64, editable=False, blank=True, default="", db_default="")
    status = models.CharField(_("status"), max_length=16, choices=SecretStatus.choices, default=SecretStatus.AVAILABLE)
    order = models.ForeignKey(
        "cardshop.Order",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="secrets",
        verbose_name=_("order"),
    )
    reserved_until = models.DateTimeField(_("reserved until"), null=True, blank=True)
    sold_at = models.DateTimeField(_("sold at"), null=True, blank=True)
    withdrawn_at = models.DateTimeField(_("withdrawn at"), null=True, blank=True)
    withdraw_reason = models.CharField(_("withdrawal reason"), max_length=200, blank=True, default="", db_default="")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("card secret")
        verbose_name_plural = _("card secrets")
        permissions = [
            ("reveal_secret", _("Can reveal a card secret")),
            ("withdraw_cardsecret", _("Can withdraw an unsold card secret")),
        ]
        constraints = [
            models.UniqueConstraint(fields=["product", "secret_hash"], name="card_secret_unique_per_product"),
            models.CheckConstraint(
                condition=models.Q(status="available", order__isnull=True) | ~models.Q(status="available"),
                name="card_secret_available_has_no_order",
            ),
        ]
        indexes = [
            models.Index(fields=["product", "status", "reserved_until"], name="card_secret_free_idx"),
            # Reservation walks unsold rows in pk order; without this it would skip every secret ever sold.
            models.Index(fields=["product", "id"], name="card_secret_unsold_idx", condition=~models.Q(status="sold")),
            models.Index(fields=["merchant_hash"], name="card_secret_merchant_hash_idx"),
        ]

    def __str__(self) -> str:
        # The id and the secret's own last characters (what the buyer reads off the card), never the whole.
        return f"#{self.pk} {self.secret_tail()}"

    def secret_tail(self) -> str:
        """ "····4F2A": at most 4 last characters, and never more than half of a short secret."""
        text = self.secret or ""
        keep = min(4, len(text) // 2)
        return "····" + (text[-keep:] if keep else "")
