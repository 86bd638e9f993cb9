"""Signed webhooks to merchants (the Standard Webhooks scheme): where each merchant wants them, every event that
happened to its orders (also listed by the events API), and each delivery of an event to an endpoint with its
attempts. The outbox is the order's own timeline: an OrderEvent of a published kind is written with
`webhook_pending` in the use case's transaction, and cardshop.services.webhooks turns it into an event after commit."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from core.fields import EncryptedTextField
from core.models import Merchant

# The order timeline's kinds that are published, and the event type each becomes.
PUBLISHED_KINDS = {
    "paid": "order.paid",
    "delivered": "order.delivered",
    "refunded": "order.refunded",
    "partially_refunded": "order.partially_refunded",  # data carries the refund: {id, amount}
}
# And those from other outboxes: a payout's (settlement's flag) and a product's stock falling low.
EVENT_TYPES = sorted([*PUBLISHED_KINDS.values(), "payout.paid", "payout.failed", "stock.low"])


class WebhookEndpoint(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+", verbose_name=_("merchant"))
    url = models.URLField(_("URL"), max_length=500)
    description = models.CharField(_("description"), max_length=200, blank=True)
    event_types = models.JSONField(_("event types"), default=list, blank=True, help_text=_("Empty: every type."))
    secret = EncryptedTextField(_("signing secret"))
    # During a rotation the old secret signs too (two signatures in the header) until it expires.
    previous_secret = EncryptedTextField(_("previous signing secret"), blank=True, default="")
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    failing_since = models.DateTimeField(_("failing since"), null=True, blank=True)
    disabled_reason = models.CharField(_("why it was disabled"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ["-pk"]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookEvent(models.Model):
    """Something that happened to a merchant's order, payout or product, once. `event_id` is the webhook-id every delivery and retry
    carries; `payload` is the body sent (never a card secret)."""

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+", verbose_name=_("merchant"))
    event_id = models.CharField(_("event id"), max_length=40, unique=True)
    type = models.CharField(_("type"), max_length=40)
    source = models.OneToOneField(
        "cardshop.OrderEvent", on_delete=models.PROTECT, null=True, related_name="webhook_event"
    )
    payload = models.JSONField(_("payload"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        ordering = ["-pk"]
        indexes = [models.Index(fields=["merchant", "-id"], name="webhook_event_merchant")]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


class DeliveryState(models.TextChoices):
    PENDING = "pending", _("pending")
    SUCCEEDED = "succeeded", _("delivered")
    FAILED = "failed", _("failed (attempts used up)")
    ABANDONED = "abandoned", _("not sent (endpoint disabled)")


class WebhookDelivery(models.Model):
    """One event to one endpoint: tried at once, then on the Standard Webhooks schedule until it succeeds."""

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(_("state"), max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, db_index=True)
    last_status_code = models.PositiveSmallIntegerField(_("last response"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-pk"]
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_once")]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id}: {self.state}"


class WebhookAttempt(models.Model):
    """The delivery log: each try, its answer and how long it took."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="log")
    status_code = models.PositiveSmallIntegerField(_("response"), null=True, blank=True)
    error = models.CharField(_("error"), max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(_("took (ms)"), default=0)
    created_at = models.DateTimeField(_("at"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.delivery_id}: {self.status_code or self.error}"
