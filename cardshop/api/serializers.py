"""What the API reads and writes. Money is always an object of integer minor units and its currency; secrets are
write-only (never in any response)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cardshop.models import (
    Category,
    CouponKind,
    DeliveryKind,
    Order,
    OrderState,
    Product,
    WebhookEndpoint,
    WebhookEvent,
)
from cardshop.models.webhooks import EVENT_TYPES
from cardshop.selectors import product_stock
from cardshop.services.notifications import order_link
from core.money import CURRENCY_EXPONENTS
from payments.contracts import RefundStatus
from settlement import facade as settlement

MAX_AMOUNT_MINOR = 10**12


# JSON's types as the schema states them: DRF would take 123 for a string, "12" for a number and "yes" for a
# boolean; a merchant's bug then passes silently. These refuse them (schemathesis' negative cases check it).
class StrictCharField(serializers.CharField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictSlugField(serializers.SlugField, StrictCharField):
    pass


class StrictRegexField(serializers.RegexField, StrictCharField):
    pass


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.SlugField: StrictSlugField,
        models.IntegerField: StrictIntegerField,
        models.BigIntegerField: StrictIntegerField,
        models.PositiveIntegerField: StrictIntegerField,
        models.SmallIntegerField: StrictIntegerField,
        models.PositiveSmallIntegerField: StrictIntegerField,
        models.BooleanField: StrictBooleanField,
    }


class PriceSerializer(serializers.Serializer):
    """A product's unit price, read from and written to its price_minor and currency."""

    amount_minor = StrictIntegerField(source="price_minor", min_value=1, max_value=MAX_AMOUNT_MINOR)
    currency = serializers.ChoiceField(choices=sorted(CURRENCY_EXPONENTS))


class CustomFieldSerializer(serializers.Serializer):
    name = StrictRegexField(r"^[a-z][a-z0-9_]{0,39}$")
    label = StrictCharField(max_length=80, required=False)
    required = StrictBooleanField(required=False)


class CategorySlugField(serializers.SlugRelatedField):
    """A category by slug, or null for none; an empty string is refused (DRF would read it as null)."""

    def run_validation(self, data=serializers.empty):
        if data == "":
            self.fail("invalid")
        return super().run_validation(data)


class PriceTierSerializer(serializers.Serializer):
    min_quantity = StrictIntegerField(min_value=2, max_value=10_000)
    unit_price = PriceSerializer(help_text="In the product's currency, below its list price and the tier before.")


@extend_schema_field(PriceTierSerializer(many=True))
class PriceTiersField(serializers.Field):
    """A product's wholesale tiers as money objects; kept on the product as minor units of its own currency."""

    default_error_messages = {"invalid": "Give a list of {min_quantity, unit_price}."}

    def __init__(self, **kwargs):
        super().__init__(source="*", **kwargs)

    def to_representation(self, product: Product) -> list[dict]:
        return [
            {"min_quantity": t["min_quantity"], "unit_price": money_of(t["unit_price_minor"], product.currency)}
            for t in product.price_tiers or []
        ]

    def to_internal_value(self, data) -> dict:
        tiers = PriceTierSerializer(data=data, many=True)
        if not isinstance(data, list) or not tiers.is_valid():
            raise serializers.ValidationError(
                tiers.errors if isinstance(data, list) else self.error_messages["invalid"]
            )
        return {
            "price_tiers": [
                {"min_quantity": t["min_quantity"], "unit_price_minor": t["unit_price"]["price_minor"]}
                for t in tiers.validated_data
            ],
            "_tier_currencies": {t["unit_price"]["currency"] for t in tiers.validated_data},
        }


class ProductSerializer(StrictModelSerializer):
    price = PriceSerializer(source="*")
    price_tiers = PriceTiersField(required=False)
    category = CategorySlugField(slug_field="slug", queryset=Category.objects.all(), allow_null=True, required=False)
    delivery_kind = serializers.ChoiceField(choices=DeliveryKind.choices, default=DeliveryKind.UNIQUE)
    reusable_secret = StrictCharField(write_only=True, required=False, max_length=2000, trim_whitespace=False)
    custom_fields = CustomFieldSerializer(many=True, required=False)
    stock = serializers.SerializerMethodField(help_text="Free codes; null when the product never runs out.")
    min_quantity = StrictIntegerField(min_value=1, max_value=10_000, required=False)
    max_quantity = StrictIntegerField(min_value=1, max_value=10_000, required=False)

    class Meta:
        model = Product
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "price",
            "delivery_kind",
            "reusable_secret",
            "custom_fields",
            "price_tiers",
            "min_quantity",
            "max_quantity",
            "is_active",
            "category",
            "sort_order",
            "stock",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {"description": {"max_length": 5000}, "sort_order": {"min_value": -(10**6), "max_value": 10**6}}

    def get_stock(self, product: Product) -> int | None:
        return product_stock(product)

    def validate(self, attrs: dict) -> dict:
        currencies = attrs.pop("_tier_currencies", set())
        currency = attrs.get("currency", getattr(self.instance, "currency", None))
        if currencies - {currency}:
            raise serializers.ValidationError({"price_tiers": "unit prices must be in the product's currency"})
        low = attrs.get("min_quantity", getattr(self.instance, "min_quantity", 1))
        high = attrs.get("max_quantity", getattr(self.instance, "max_quantity", 5))
        if high < low:
            raise serializers.ValidationError({"max_quantity": "must be at least min_quantity"})
        return attrs


class StockUploadSerializer(serializers.Serializer):
    codes = StrictCharField(
        max_length=2_000_000, trim_whitespace=False, help_text="One card secret per line; blank lines are ignored."
    )


class StockReportSerializer(serializers.Serializer):
    imported = serializers.IntegerField()
    duplicates = serializers.IntegerField(help_text="Skipped: repeated in the upload or already held by the merchant.")
    duplicates_elsewhere = serializers.IntegerField(help_text="Of the duplicates: held by another of your products.")
    invalid = serializers.IntegerField(help_text="Lines too long or with characters that cannot be printed.")


class MoneySerializer(serializers.Serializer):
    amount_minor = serializers.IntegerField()
    currency = serializers.CharField()


def money_of(amount_minor: int, currency: str) -> dict:
    return {"amount_minor": amount_minor, "currency": currency}


class OrderSerializer(serializers.ModelSerializer):
    """An order as its merchant sees it. No card secret is ever in it (those have their own audited endpoint)."""

    id = serializers.CharField(source="order_no", read_only=True)
    product = serializers.IntegerField(source="product_id", read_only=True)
    list_price = serializers.SerializerMethodField(help_text="The product's unit price when the order was made.")
    unit_price = serializers.SerializerMethodField(help_text="What one unit cost at this quantity (wholesale tiers).")
    discount = serializers.SerializerMethodField(help_text="What the coupon took off.")
    coupon = serializers.SerializerMethodField(help_text="The coupon code used, or null.")
    amount = serializers.SerializerMethodField(help_text="What the buyer pays: unit_price x quantity - discount.")
    pay_url = serializers.SerializerMethodField(
        help_text="Where to send the buyer: the order's page, which offers the payment methods while it waits "
        "for payment (a signed link, valid 30 days); null once it no longer does."
    )

    class Meta:
        model = Order
        fields = [
            "id",
            "state",
            "product",
            "quantity",
            "list_price",
            "unit_price",
            "discount",
            "coupon",
            "amount",
            "email",
            "custom_input",
            "created_at",
            "expires_at",
            "paid_at",
            "delivered_at",
            "refunded_at",
            "pay_url",
        ]
        read_only_fields = fields

    @extend_schema_field(MoneySerializer)
    def get_list_price(self, order: Order) -> dict:
        return money_of(order.list_price_minor, order.currency)

    @extend_schema_field(MoneySerializer)
    def get_unit_price(self, order: Order) -> dict:
        return money_of(order.unit_price_minor, order.currency)

    @extend_schema_field(MoneySerializer)
    def get_discount(self, order: Order) -> dict:
        return money_of(order.discount_minor, order.currency)

    def get_coupon(self, order: Order) -> str | None:
        return order.coupon.code if order.coupon_id else None

    @extend_schema_field(MoneySerializer)
    def get_amount(self, order: Order) -> dict:
        return money_of(order.amount_minor, order.currency)

    def get_pay_url(self, order: Order) -> str | None:
        if order.state not in (OrderState.PENDING, OrderState.REVIEW):
            return None
        return order_link(order.order_no)


class OrderCreateSerializer(serializers.Serializer):
    product = StrictIntegerField(min_value=1, help_text="One of your products' id.")
    quantity = StrictIntegerField(min_value=1, max_value=10_000, default=1)
    email = serializers.EmailField(help_text="The buyer's: the codes are mailed there.")
    buyer_ip = serializers.IPAddressField(required=False, help_text="The buyer's address, for risk; yours is not.")
    custom_input = serializers.DictField(child=StrictCharField(max_length=500), required=False)
    language = serializers.ChoiceField(choices=[code for code, _name in settings.LANGUAGES], required=False)
    coupon = StrictCharField(max_length=32, required=False, allow_blank=True, help_text="One of your coupon codes.")

    def validate_email(self, value):
        if not isinstance(self.initial_data.get("email"), str):
            raise serializers.ValidationError("must be a string")
        return value


class OrderListFilters(serializers.Serializer):
    state = serializers.ChoiceField(choices=OrderState.choices, required=False)
    email = serializers.EmailField(required=False)
    created_gte = serializers.DateTimeField(required=False)
    created_lt = serializers.DateTimeField(required=False)


class OrderSecretsSerializer(serializers.Serializer):
    order = serializers.CharField(help_text="The order number.")
    state = serializers.CharField()
    secrets = serializers.ListField(
        child=serializers.CharField(), help_text="The delivered codes (or the delivery note); empty until delivered."
    )


class RefundRequestSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=200, required=False, allow_blank=True, help_text="Kept in the audit trail.")
    amount = PriceSerializer(
        required=False,
        help_text="Part of the order to refund, in its currency; absent: all that is left of it. Several refunds "
        "may add up to the whole (channels that refund only whole payments refuse a part).",
    )


class RefundSerializer(serializers.Serializer):
    """A refund of an order's payment, in full or in part; it completes when the channel confirms (follow the
    order: a whole refund makes it `refunded`, a part leaves it as it is and the event order.partially_refunded
    says so)."""

    id = serializers.CharField(source="refund_no")
    order = serializers.CharField(source="reference")
    status = serializers.ChoiceField(choices=RefundStatus.choices)
    amount = serializers.SerializerMethodField()
    reason = serializers.CharField()

    @extend_schema_field(MoneySerializer)
    def get_amount(self, refund) -> dict:
        return money_of(refund.amount.amount_minor, refund.amount.currency)


class WebhookEndpointSerializer(serializers.ModelSerializer):
    """An endpoint of yours; its signing secret is shown only when it is made or rotated."""

    url = serializers.URLField(max_length=500)
    description = StrictCharField(max_length=200, required=False, allow_blank=True)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES), required=False, help_text="Empty or absent: every type."
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "event_types", "is_active", "disabled_reason", "created_at"]
        read_only_fields = ["id", "is_active", "disabled_reason", "created_at"]


class WebhookEndpointMadeSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(read_only=True, help_text="whsec_...: shown this once.")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class WebhookEventSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="event_id")
    payload = serializers.JSONField(help_text="The body every delivery of this event sent.")

    class Meta:
        model = WebhookEvent
        fields = ["id", "type", "payload", "created_at"]
        read_only_fields = fields


class EventListFilters(serializers.Serializer):
    type = serializers.ChoiceField(choices=EVENT_TYPES, required=False)


# --- money: balances, the statement and payouts (read through settlement's facade) ---------------------------------


class BalanceSerializer(serializers.Serializer):
    """Your money in one currency. `available` is what the next payout takes; `pending` waits for its settlement
    cycle, `reserve` is held back for its days; `owed` is what refunds took beyond your available money (netted
    against the next money you receive); `in_transit` is held by a payout on its way."""

    currency = serializers.CharField(source="balances.currency")
    available = serializers.SerializerMethodField()
    pending = serializers.SerializerMethodField()
    reserve = serializers.SerializerMethodField()
    owed = serializers.SerializerMethodField()
    in_transit = serializers.SerializerMethodField()

    @extend_schema_field(MoneySerializer)
    def get_available(self, view) -> dict:
        return money_of(view.balances.available_minor, view.balances.currency)

    @extend_schema_field(MoneySerializer)
    def get_pending(self, view) -> dict:
        return money_of(view.balances.pending_minor, view.balances.currency)

    @extend_schema_field(MoneySerializer)
    def get_reserve(self, view) -> dict:
        return money_of(view.balances.reserve_minor, view.balances.currency)

    @extend_schema_field(MoneySerializer)
    def get_owed(self, view) -> dict:
        return money_of(view.balances.owed_minor, view.balances.currency)

    @extend_schema_field(MoneySerializer)
    def get_in_transit(self, view) -> dict:
        return money_of(view.in_transit_minor, view.balances.currency)


class BalanceListSerializer(serializers.Serializer):
    object = serializers.ChoiceField(choices=["list"])
    data = BalanceSerializer(many=True)


class StatementLineSerializer(serializers.Serializer):
    """One movement of your money: positive in your favour (a sale credited, a release, a payout given back),
    negative against it (a refund, a payout held, a fee). `transaction` groups the lines booked together."""

    id = serializers.IntegerField(source="line_id")
    transaction = serializers.IntegerField(source="transaction_id")
    created_at = serializers.DateTimeField()
    kind = serializers.CharField(source="transaction_kind", help_text="sale, release, refund, payout, adjustment...")
    reference = serializers.CharField(help_text="The order number, or the payout number.")
    account = serializers.CharField(source="account_kind")
    amount = serializers.SerializerMethodField()
    description = serializers.CharField(source="memo")

    @extend_schema_field(MoneySerializer)
    def get_amount(self, line) -> dict:
        return money_of(line.amount_minor, line.currency)


class StatementFilters(serializers.Serializer):
    currency = serializers.ChoiceField(choices=sorted(CURRENCY_EXPONENTS), required=False)
    account = serializers.ChoiceField(choices=settlement.MERCHANT_ACCOUNT_KINDS, required=False)


class PayoutSerializer(serializers.Serializer):
    """Your available money sent to your payee. `paid` and `failed` are final; a failed payout moved nothing and
    its money is available again."""

    id = serializers.CharField(source="payout_no")
    state = serializers.ChoiceField(choices=settlement.PAYOUT_STATES)
    amount = serializers.SerializerMethodField()
    payee = serializers.CharField(source="payee_masked", help_text="Your account at the provider, masked.")
    failure_reason = serializers.CharField()
    retry_of = serializers.CharField(allow_null=True, help_text="The failed payout this one retried.")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True, help_text="When it was paid or failed.")

    @extend_schema_field(MoneySerializer)
    def get_amount(self, payout) -> dict:
        return money_of(payout.amount_minor, payout.currency)


class PayoutFilters(serializers.Serializer):
    state = serializers.ChoiceField(choices=[*settlement.PAYOUT_STATES, "open"], required=False)


# --- coupons -----------------------------------------------------------------------------------------------------


class CouponSerializer(serializers.Serializer):
    """A code your buyers type at checkout (or you send as `coupon` when you make an order): fixed (`amount_off`) or
    percent (`percent_off`, 1 to 99), for one of your products or all of them. `uses` counts the orders holding it:
    an order that expires or is cancelled unpaid gives its use back."""

    id = serializers.IntegerField(read_only=True)
    code = StrictRegexField(r"^[A-Za-z0-9_-]{3,32}$", help_text="Matched in capitals.")
    kind = serializers.ChoiceField(choices=CouponKind.choices)
    amount_off = PriceSerializer(required=False, allow_null=True, help_text="For kind fixed.")
    percent_off = StrictIntegerField(min_value=1, max_value=99, required=False, allow_null=True)
    product = StrictIntegerField(min_value=1, required=False, allow_null=True, help_text="Empty: every product.")
    max_uses = StrictIntegerField(min_value=1, max_value=10**9, required=False, allow_null=True)
    per_buyer_limit = StrictIntegerField(min_value=1, max_value=10**6, required=False, allow_null=True)
    valid_from = serializers.DateTimeField(required=False, allow_null=True)
    valid_until = serializers.DateTimeField(required=False, allow_null=True)
    uses = serializers.IntegerField(read_only=True)
    is_active = serializers.BooleanField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)

    def to_representation(self, coupon) -> dict:
        return {
            "id": coupon.pk,
            "code": coupon.code,
            "kind": coupon.kind,
            "amount_off": money_of(coupon.amount_off_minor, coupon.currency) if coupon.amount_off_minor else None,
            "percent_off": coupon.percent_off,
            "product": coupon.product_id,
            "max_uses": coupon.max_uses,
            "per_buyer_limit": coupon.per_buyer_limit,
            "valid_from": serializers.DateTimeField().to_representation(coupon.valid_from)
            if coupon.valid_from
            else None,
            "valid_until": serializers.DateTimeField().to_representation(coupon.valid_until)
            if coupon.valid_until
            else None,
            "uses": coupon.uses,
            "is_active": coupon.is_active,
            "created_at": serializers.DateTimeField().to_representation(coupon.created_at),
        }

    def validated_fields(self) -> dict:
        """The coupon's fields for cardshop.services.coupons.coupon_create."""
        data = self.validated_data
        amount = data.get("amount_off") or {}
        return {
            "code": data["code"].upper(),
            "kind": data["kind"],
            "amount_off_minor": amount.get("price_minor"),
            "currency": amount.get("currency", ""),
            "percent_off": data.get("percent_off"),
            "product_id": data.get("product"),
            "max_uses": data.get("max_uses"),
            "per_buyer_limit": data.get("per_buyer_limit"),
            "valid_from": data.get("valid_from"),
            "valid_until": data.get("valid_until"),
        }
