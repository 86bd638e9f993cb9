"""Products a merchant sells, how each is delivered, and how the storefront shows them (categories, images,
the shop's announcement)."""

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


class Category(models.Model):
    """A tab of the catalog. Display only: orders and stock never depend on it."""

    name = models.CharField(_("name"), max_length=60)
    slug = models.SlugField(_("slug"), unique=True)
    sort_order = models.IntegerField(_("sort order"), default=0)
    is_active = models.BooleanField(
        _("shown"),
        default=True,
        help_text=_("Off: the category and its products are not listed in the catalog (their pages still open)."),
    )

    class Meta:
        verbose_name = _("category")
        verbose_name_plural = _("categories")
        ordering = ["sort_order", "pk"]

    def __str__(self) -> str:
        return self.name


def price_tiers_clean(tiers, *, list_price_minor: int | None) -> list[dict]:
    """Tiers sorted by quantity, each from 2 units up, each cheaper than the list price and than the tier before;
    a ValidationError on `price_tiers` otherwise."""
    bad = ValidationError(
        {
            "price_tiers": _(
                "Give a list of {min_quantity, unit_price_minor}: quantities from 2 up, each once, and unit prices "
                "below the list price that fall as the quantity grows."
            )
        }
    )
    if not isinstance(tiers, list) or len(tiers) > 20:
        raise bad
    cleaned = []
    for tier in tiers:
        if not isinstance(tier, dict) or set(tier) != {"min_quantity", "unit_price_minor"}:
            raise bad
        quantity, price = tier["min_quantity"], tier["unit_price_minor"]
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (quantity, price)) or quantity < 2 or price < 1:
            raise bad
        cleaned.append({"min_quantity": quantity, "unit_price_minor": price})
    cleaned.sort(key=lambda t: t["min_quantity"])
    prices = [list_price_minor or 0, *[t["unit_price_minor"] for t in cleaned]]
    quantities = [t["min_quantity"] for t in cleaned]
    if len(set(quantities)) != len(quantities) or any(b >= a for a, b in zip(prices, prices[1:], strict=False)):
        raise bad
    return cleaned


class Product(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+", verbose_name=_("merchant"))
    # SET_NULL: a category only groups the catalog; deleting one must neither be blocked by its products nor take
    # them off sale; they are listed as uncategorised until the operator files them again.
    category = models.ForeignKey(
        Category,
        verbose_name=_("category"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="products",
    )
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
    # Wholesale: [{"min_quantity": 10, "unit_price_minor": 900}, ...], from 10 units each costs 9.00. Kept on the
    # product row, so the checkout reads it with the product (no query more on the hot path).
    price_tiers = models.JSONField(
        _("price tiers"),
        default=list,
        blank=True,
        help_text=_('Unit prices by quantity, e.g. [{"min_quantity": 10, "unit_price_minor": 900}].'),
    )
    min_quantity = models.PositiveIntegerField(_("minimum per order"), default=1)
    max_quantity = models.PositiveIntegerField(_("maximum per order"), default=5)
    is_active = models.BooleanField(_("on sale"), default=True)
    sort_order = models.IntegerField(_("sort order"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    # When its merchant was told its stock ran low (a stock.low event); cleared by the next upload, so the alert
    # fires once per running low, not on every sale below the threshold.
    low_stock_announced_at = models.DateTimeField(_("low stock announced at"), null=True, blank=True, editable=False)

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

    @property
    def picture(self) -> ProductImage | None:
        """The product's image, or None (pages then draw a placeholder)."""
        try:
            return self.image
        except ProductImage.DoesNotExist:
            return None

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
        self.price_tiers = price_tiers_clean(self.price_tiers, list_price_minor=self.price_minor)
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


class ProductImage(models.Model):
    """The product's picture as the shop re-encoded it (bounded JPEG plus a square catalog thumbnail).

    The bytes live in the database, not under MEDIA_ROOT: every web process behind the same PostgreSQL serves
    them without a shared disk or a web server for media, backups carry them, and a fresh clone needs no
    folder. They are a few dozen KB each and sit in their own table so product queries never load them.
    """

    product = models.OneToOneField(
        Product, on_delete=models.CASCADE, related_name="image", primary_key=True, verbose_name=_("product")
    )
    full_jpeg = models.BinaryField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    thumb_jpeg = models.BinaryField()
    thumb_size = models.PositiveIntegerField()  # the thumbnail is a square
    digest = models.CharField(max_length=64)  # sha256 of full + thumb: the ETag and the URLs' cache buster
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("product image")
        verbose_name_plural = _("product images")

    def __str__(self) -> str:
        return f"{self.product_id}: {self.width}x{self.height}"

    @property
    def version(self) -> str:
        return self.digest[:12]


class ShopAnnouncement(models.Model):
    """The one notice shown on top of the catalog and product pages (a singleton: row 1)."""

    SINGLETON_PK = 1

    text = models.TextField(
        _("text"), max_length=1000, blank=True, help_text=_("Plain text; line breaks are kept, HTML is shown as typed.")
    )
    is_active = models.BooleanField(_("shown"), default=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("shop announcement")
        verbose_name_plural = _("shop announcement")
        constraints = [models.CheckConstraint(condition=models.Q(pk=1), name="shop_announcement_singleton")]

    def __str__(self) -> str:
        return str(_("Shop announcement"))

    def save(self, *args, **kwargs) -> None:
        self.pk = self.SINGLETON_PK
        super().save(*args, **kwargs)


class MerchantShopPage(models.Model):
    """A merchant's own page at /s/<merchant slug>/: its products on sale, under their categories, with its notice."""

    merchant = models.OneToOneField(
        Merchant, on_delete=models.CASCADE, primary_key=True, related_name="+", verbose_name=_("merchant")
    )
    announcement = models.TextField(
        _("announcement"),
        max_length=1000,
        blank=True,
        help_text=_("Shown on top of the merchant's page. Plain text; line breaks are kept, HTML is shown as typed."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("merchant shop page")
        verbose_name_plural = _("merchant shop pages")

    def __str__(self) -> str:
        return str(self.merchant)
