"""Orders (a protected FSM), their event timeline and the audit of secret reveals."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_fsm import RETURN_VALUE, ConcurrentTransitionMixin, FSMField, transition

from cardshop.models.catalog import DeliveryKind, Product
from core.fields import EncryptedTextField
from core.models import Merchant
from core.money import Money, MoneyError


class OrderState(models.TextChoices):
    REVIEW = "review", _("being checked by the shop")  # risk review: stock held, not payable until approved
    PENDING = "pending", _("awaiting payment")
    PAID = "paid", _("paid")
    DELIVERED = "delivered", _("delivered")
    UNDELIVERABLE = "undeliverable", _("paid, stock gone: operator action needed")
    EXPIRED = "expired", _("expired")
    CANCELLED = "cancelled", _("cancelled")
    REFUNDING = "refunding", _("refund in progress")
    REFUNDED = "refunded", _("refunded")


S = OrderState


class Order(ConcurrentTransitionMixin, models.Model):
    DELIVERY_FIELDS = ("state", "delivered_at", "delivered_kind", "delivered_text")

    order_no = models.CharField(_("order no"), max_length=32, unique=True)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+", verbose_name=_("merchant"))
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="orders", verbose_name=_("product"))
    quantity = models.PositiveIntegerField(_("quantity"))
    # What it was sold at: the product's list price, the unit price this quantity earned (a wholesale tier), the
    # coupon's discount, and the amount paid = unit price x quantity - discount (a CHECK below).
    list_price_minor = models.BigIntegerField(_("list unit price (minor units)"))
    unit_price_minor = models.BigIntegerField(_("unit price (minor units)"))
    discount_minor = models.BigIntegerField(_("discount (minor units)"), default=0, db_default=0)
    coupon = models.ForeignKey(
        "cardshop.Coupon",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="orders",
        verbose_name=_("coupon"),
    )
    amount_minor = models.BigIntegerField(_("amount (minor units)"))
    currency = models.CharField(_("currency"), max_length=3)
    email = models.EmailField(_("email"))
    query_password_hash = models.CharField(max_length=128, editable=False)
    buyer_ip = models.GenericIPAddressField(_("buyer IP"), null=True, blank=True)
    # The storefront's device cookie at checkout (cardshop.device): risk counts declined payments per device too.
    buyer_device = models.CharField(_("buyer device"), max_length=32, blank=True, default="")
    # core.client_ip.ip_group(buyer_ip): what the pending-order cap counts (an IPv6 /64, an IPv4 as is).
    buyer_ip_group = models.CharField(_("buyer network"), max_length=49, blank=True, default="", db_default="")
    custom_input = models.JSONField(_("buyer input"), default=dict, blank=True)
    language = models.CharField(_("buyer language"), max_length=10, default="en")
    delivery_note = EncryptedTextField(_("manual delivery"), blank=True, default="")
    # Frozen by deliver(): what the buyer received stays theirs when the product is edited, rotated or re-typed.
    delivered_kind = models.CharField(
        _("delivered as"), max_length=16, choices=DeliveryKind.choices, blank=True, default="", db_default=""
    )
    delivered_text = EncryptedTextField(_("reusable secret as delivered"), blank=True, default="", db_default="")
    state = FSMField(_("state"), default=S.PENDING, choices=S.choices, protected=True)
    expires_at = models.DateTimeField(_("expires at"))
    paid_at = models.DateTimeField(_("paid at"), null=True, blank=True)
    # The payment (our out_trade_no) that paid the order; any other paid payment of it is a second one.
    paid_by = models.CharField(_("paid by payment"), max_length=44, blank=True, editable=False)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    notified_at = models.DateTimeField(_("buyer notified at"), null=True, blank=True)
    # A mail sender's claim; it lapses after CARDSHOP_MAIL_CLAIM_LEASE_SECONDS so a crashed send is retried.
    notify_claimed_at = models.DateTimeField(_("buyer mail claimed at"), null=True, blank=True, editable=False)
    refund_from = models.CharField(_("state before the refund"), max_length=16, blank=True, editable=False)
    refunded_at = models.DateTimeField(_("refunded at"), null=True, blank=True)
    # The "your order was refunded" mail, at least once: a leased claim, then when the backend accepted it.
    refund_notified_at = models.DateTimeField(_("buyer told of the refund at"), null=True, blank=True)
    refund_notify_claimed_at = models.DateTimeField(_("refund mail claimed at"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        # Operator powers beyond view/change, each granted on its own (README "Operators").
        permissions = [
            ("refund_order", _("Can refund orders")),
            ("fulfil_order", _("Can fulfil manual-delivery orders")),
            ("retry_delivery", _("Can retry delivery of undeliverable orders")),
            ("review_order", _("Can approve or reject orders held for risk review")),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="order_quantity_positive"),
            models.CheckConstraint(
                condition=models.Q(
                    amount_minor=models.F("unit_price_minor") * models.F("quantity") - models.F("discount_minor")
                ),
                name="order_amount_is_price_times_quantity_less_discount",
            ),
            models.CheckConstraint(
                condition=models.Q(discount_minor__gte=0, amount_minor__gt=0), name="order_discount_leaves_an_amount"
            ),
        ]
        indexes = [
            models.Index(fields=["state", "expires_at"], name="order_state_expiry"),
            models.Index(fields=["email", "state"], name="order_email_state"),
            models.Index(fields=["buyer_ip_group", "state"], name="order_ip_group_state"),
        ]

    def __str__(self) -> str:
        return self.order_no

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def amount_label(self) -> str:
        """The amount for pages; a row with a currency the money module refuses still renders (legacy data)."""
        try:
            return self.amount.display()
        except MoneyError:
            return f"{self.amount_minor} {self.currency} (minor units)"

    @property
    def discount_label(self) -> str:
        try:
            return Money(self.discount_minor, self.currency).display()
        except MoneyError:
            return f"{self.discount_minor} {self.currency} (minor units)"

    # Transitions only change fields; services lock, check, save and record events.
    @transition(field=state, source=[S.PENDING, S.EXPIRED, S.CANCELLED], target=S.PAID)
    def mark_paid(self) -> None:
        self.paid_at = timezone.now()

    # Saving a delivery must include DELIVERY_FIELDS.
    @transition(field=state, source=[S.PAID, S.UNDELIVERABLE], target=S.DELIVERED)
    def deliver(self) -> None:
        self.delivered_at = timezone.now()
        self.delivered_kind = self.product.delivery_kind
        self.delivered_text = self.product.reusable_secret if self.delivered_kind == DeliveryKind.REUSABLE else ""

    @transition(field=state, source=S.PAID, target=S.UNDELIVERABLE)
    def mark_undeliverable(self) -> None:
        pass

    @transition(field=state, source=[S.PENDING, S.REVIEW], target=S.EXPIRED)
    def expire(self) -> None:
        pass

    @transition(field=state, source=S.REVIEW, target=S.PENDING)
    def review_approve(self) -> None:
        """An operator let it through: the buyer may pay now (the service gives it a fresh deadline)."""

    @transition(field=state, source=S.REVIEW, target=S.CANCELLED)
    def review_reject(self) -> None:
        pass

    @transition(field=state, source=S.PENDING, target=S.CANCELLED)
    def cancel(self) -> None:
        pass

    # Refunds are full: the buyer's money goes back; delivered keys are not put back on sale (they were shown).
    @transition(field=state, source=[S.PAID, S.DELIVERED, S.UNDELIVERABLE], target=S.REFUNDING)
    def refund_start(self) -> None:
        self.refund_from = self.state

    @transition(field=state, source=S.REFUNDING, target=S.REFUNDED)
    def refund_complete(self) -> None:
        self.refunded_at = timezone.now()

    @transition(field=state, source=S.REFUNDING, target=RETURN_VALUE(S.PAID, S.DELIVERED, S.UNDELIVERABLE))
    def refund_abort(self) -> str:
        """The channel refused the refund: back where it was, so an operator can act again."""
        return self.refund_from or S.DELIVERED


class InReviewManager(models.Manager["OrderInReview"]):
    def get_queryset(self) -> models.QuerySet[OrderInReview]:
        return super().get_queryset().filter(state=S.REVIEW)


class OrderInReview(Order):
    """The orders risk held for review, for the back office's review queue: the same rows, only those in REVIEW
    (a proxy, no table of its own). Its admin approves or rejects them through cardshop.services.review."""

    objects = InReviewManager()

    class Meta:
        proxy = True
        verbose_name = _("order in review")
        verbose_name_plural = _("orders in review")


class OrderEvent(models.Model):
    """Append-only timeline of what happened to an order and who did it."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events", verbose_name=_("order"))
    kind = models.CharField(_("event"), max_length=40)
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    actor = models.CharField(_("actor"), max_length=80, default="system")
    created_at = models.DateTimeField(_("at"), auto_now_add=True)
    # The webhook outbox: set on the kinds merchants are told of (cardshop.models.webhooks.PUBLISHED_KINDS) in the
    # same INSERT as the event, cleared once the webhook event is made from it.
    webhook_pending = models.BooleanField(default=False, editable=False)

    class Meta:
        verbose_name = _("order event")
        verbose_name_plural = _("order events")
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["id"], condition=models.Q(webhook_pending=True), name="order_event_webhook_pending")
        ]

    def __str__(self) -> str:
        return f"{self.order_id}:{self.kind}"


class SecretRevealLog(models.Model):
    """Who saw which secret in the back office, and when."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("operator")
    )
    secret = models.ForeignKey(
        "cardshop.CardSecret", on_delete=models.PROTECT, related_name="+", verbose_name=_("card secret")
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("secret reveal")
        verbose_name_plural = _("secret reveals")

    def __str__(self) -> str:
        return f"{self.user_id} saw #{self.secret_id}"
