"""Products a merchant sells and how each is delivered."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from core.fields import EncryptedTextField
from core.models import Merchant
from core.money import CURRENCY_EXPONENTS, Money, MoneyError, currency_validate
from payments import facade as payments


def validate_currency(value: str) -> None:
    """An ISO 4217 code the money module supports; anything else would fail later, on a page or a payment."""
    try:
        currency_validate(value)
    except MoneyError:
        raise ValidationError(
            _("%(value)s is not a supported ISO 4217 currency code (one of %(codes)s)."),
            code="currency",
            params={"value": value, "codes": ", ".join(sorted(CURRENCY_EXPONENTS))},
        ) from None


class DeliveryKind(models.TextChoices):
    UNIQUE = "unique", _("unique card secrets (each sold once)")
    REUSABLE = "reusable", _("one reusable secret for every buyer")
    MANUAL = "manual", _("manual delivery by the operator")


class Product(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(_("name"), max_length=120)
    slug = models.SlugField(_("slug"), unique=True)
    description = models.TextField(_("description"), blank=True)
    price_minor = models.BigIntegerField(_("price (minor units)"))
    currency = models.CharField(_("currency"), max_length=3, default="CNY", validators=[validate_currency])
    delivery_kind = models.CharField(
        _("delivery"), max_length=16, choices=DeliveryKind.choices, default=DeliveryKind.UNIQUE
    )
    reusable_secret = EncryptedTextField(_("reusable secret"), blank=True, default="")
    custom_fields = models.JSONField(
        _("buyer fields (manual delivery)"),
        default=list,
        blank=True,
        help_text=_('A list like [{"name": "account", "label": "Game account", "required": true}]'),
    )
    min_quantity = models.PositiveIntegerField(_("minimum per order"), default=1)
    max_quantity = models.PositiveIntegerField(_("maximum per order"), default=5)
    is_active = models.BooleanField(_("on sale"), default=True)
    sort_order = models.IntegerField(_("sort order"), default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        ordering = ["sort_order", "pk"]
        constraints = [
            models.CheckConstraint(condition=models.Q(price_minor__gt=0), name="product_price_positive"),
            models.CheckConstraint(
                condition=models.Q(min_quantity__gte=1, max_quantity__gte=models.F("min_quantity")),
                name="product_quantity_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def price(self) -> Money:
        return Money(self.price_minor, self.currency)

    @property
    def price_label(self) -> str:
        """The price for pages; a row with a currency the money module refuses still renders (legacy data)."""
        try:
            return self.price.display()  # ¥9.90, US$9.90: how buyers read a price
        except MoneyError:
            return f"{self.price_minor} {self.currency} (minor units)"

    def _going_on_sale(self) -> bool:
        """Whether this save puts the product on sale (new, re-activated, or its currency changed while on sale)."""
        if not self.is_active:
            return False
        before = Product.objects.filter(pk=self.pk).values_list("is_active", "currency").first() if self.pk else None
        return before is None or before != (True, self.currency)

    def clean(self) -> None:
        if self.delivery_kind == DeliveryKind.REUSABLE and not self.reusable_secret:
            raise ValidationError({"reusable_secret": _("A reusable product needs its secret.")})
        if not isinstance(self.custom_fields, list) or not all(
            isinstance(f, dict) and f.get("name") for f in self.custom_fields
        ):
            raise ValidationError({"custom_fields": _("Each field needs at least a name.")})
        try:
            currency_validate(self.currency)
        except MoneyError:
            return  # the field's own validator reports it
        if self._going_on_sale() and not payments.payment_options(currency=self.currency):
            raise ValidationError(
                {
                    "is_active": _(
                        "No enabled payment channel accepts %(currency)s: enable one for this currency, "
                        "or keep the product off sale."
                    )
                    % {"currency": self.currency}
                }
            )
