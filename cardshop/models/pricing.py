"""Coupons: what a merchant takes off an order's price. (Wholesale tiers live on the product: Product.price_tiers.)

An order keeps what it was sold at (cardshop.models.orders.Order): the list unit price, the unit price its quantity
earned, the discount and the amount paid, with amount = unit price x quantity - discount as a CHECK.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from cardshop.models.catalog import Product
from core.models import Merchant


class CouponKind(models.TextChoices):
    FIXED = "fixed", _("amount off")
    PERCENT = "percent", _("percent off")


class Coupon(models.Model):
    """A code a buyer types at checkout. Reserved by the order it is used on (`uses` counts it) and given back when
    that order expires or is cancelled unpaid; one row lock per checkout that uses it keeps `max_uses` exact."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+", verbose_name=_("merchant"))
    code = models.CharField(
        _("code"),
        max_length=32,
        validators=[RegexValidator(r"^[A-Z0-9_-]{3,32}$", _("3 to 32 letters, digits, - or _ (kept in capitals)."))],
    )
    kind = models.CharField(_("kind"), max_length=8, choices=CouponKind.choices, default=CouponKind.FIXED)
    amount_off_minor = models.BigIntegerField(_("amount off (minor units)"), null=True, blank=True)
    currency = models.CharField(_("currency"), max_length=3, blank=True, help_text=_("Of the amount off."))
    percent_off = models.PositiveSmallIntegerField(
        _("percent off"), null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(99)]
    )
    product = models.ForeignKey(
        Product,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="coupons",
        verbose_name=_("product"),
        help_text=_("Empty: every product of the merchant."),
    )
    max_uses = models.PositiveIntegerField(_("uses allowed"), null=True, blank=True, help_text=_("Empty: no limit."))
    uses = models.PositiveIntegerField(_("uses so far"), default=0, editable=False)
    per_buyer_limit = models.PositiveIntegerField(
        _("uses per buyer"), null=True, blank=True, help_text=_("Per email address. Empty: no limit.")
    )
    valid_from = models.DateTimeField(_("valid from"), null=True, blank=True)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("coupon")
        verbose_name_plural = _("coupons")
        ordering = ["-pk"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "code"], name="coupon_code_per_merchant"),
            models.CheckConstraint(
                condition=(
                    models.Q(kind="fixed", amount_off_minor__gt=0, percent_off__isnull=True) & ~models.Q(currency="")
                )
                | models.Q(kind="percent", percent_off__gte=1, percent_off__lte=99, amount_off_minor__isnull=True),
                name="coupon_kind_fields",
            ),
            models.CheckConstraint(
                condition=models.Q(max_uses__isnull=True) | models.Q(uses__lte=models.F("max_uses")),
                name="coupon_uses_within_max",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        """What each kind needs (the CHECK says it too, without the words): every form and the API run this."""
        self.code = (self.code or "").strip().upper()
        if self.kind == CouponKind.PERCENT:
            self.amount_off_minor, self.currency = None, ""
            if not self.percent_off:
                raise ValidationError({"percent_off": _("A percent coupon needs its percent (1 to 99).")})
        else:
            self.percent_off = None
            if not self.amount_off_minor or self.amount_off_minor < 1:
                raise ValidationError({"amount_off_minor": _("An amount-off coupon needs its amount.")})
            if not self.currency:
                raise ValidationError({"currency": _("An amount-off coupon needs its currency.")})
        if self.product_id is not None and self.merchant_id and self.product.merchant_id != self.merchant_id:
            raise ValidationError({"product": _("The product must be one of the merchant's.")})
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValidationError({"valid_until": _("The end must come after the start.")})
