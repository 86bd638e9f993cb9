"""Alerts to merchants on a sale, a refund and low stock, by email and by a Telegram bot message: where each
merchant wants them (each switchable) and every alert with its sending state. An alert is made from a merchant
event (WebhookEvent) in the transaction that makes the event, and sent after commit (cardshop.services.merchant_alerts).
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from core.fields import EncryptedTextField
from core.models import Merchant

# What a bot token and a chat look like (the token becomes part of a URL path: nothing else may pass).
TELEGRAM_TOKEN_RE = r"^[0-9]{5,20}:[A-Za-z0-9_-]{20,64}$"  # noqa: S105 (a pattern, not a secret)
TELEGRAM_CHAT_RE = r"^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$"


class AlertKind(models.TextChoices):
    SALE = "sale", _("sale")
    REFUND = "refund", _("refund")
    LOW_STOCK = "low_stock", _("low stock")


class AlertChannel(models.TextChoices):
    EMAIL = "email", _("email")
    TELEGRAM = "telegram", _("Telegram")


# The merchant event each kind of alert is made from.
ALERT_OF_EVENT = {
    "order.paid": AlertKind.SALE,
    "order.refunded": AlertKind.REFUND,
    "order.partially_refunded": AlertKind.REFUND,
    "stock.low": AlertKind.LOW_STOCK,
}


class MerchantAlertSettings(models.Model):
    """Where a merchant is told of its sales, refunds and low stock. No row: no alerts (a merchant opts in, in its
    console or through an operator)."""

    merchant = models.OneToOneField(
        Merchant, on_delete=models.CASCADE, related_name="+", verbose_name=_("merchant"), primary_key=True
    )
    email = models.EmailField(_("email to"), blank=True, help_text=_("Empty: the merchant's contact email."))
    email_on_sale = models.BooleanField(_("email on a sale"), default=True)
    email_on_refund = models.BooleanField(_("email on a refund"), default=True)
    email_on_low_stock = models.BooleanField(_("email on low stock"), default=True)
    telegram_bot_token = EncryptedTextField(
        _("Telegram bot token"),
        blank=True,
        default="",
        validators=[RegexValidator(TELEGRAM_TOKEN_RE, _("A bot token looks like 123456789:AAE..., from @BotFather."))],
    )
    telegram_chat_id = models.CharField(
        _("Telegram chat id"),
        max_length=40,
        blank=True,
        validators=[RegexValidator(TELEGRAM_CHAT_RE, _("A chat id is a number (or @channelname)."))],
    )
    telegram_on_sale = models.BooleanField(_("Telegram on a sale"), default=True)
    telegram_on_refund = models.BooleanField(_("Telegram on a refund"), default=True)
    telegram_on_low_stock = models.BooleanField(_("Telegram on low stock"), default=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("merchant alert settings")
        verbose_name_plural = _("merchant alert settings")

    def __str__(self) -> str:
        return str(self.merchant)

    def wants(self, channel: str, kind: str) -> bool:
        if channel == AlertChannel.TELEGRAM and not (self.telegram_bot_token and self.telegram_chat_id):
            return False
        return bool(getattr(self, f"{channel}_on_{kind}"))


class AlertState(models.TextChoices):
    PENDING = "pending", _("pending")
    SENT = "sent", _("sent")
    FAILED = "failed", _("failed")


class MerchantAlert(models.Model):
    """One alert on one channel: tried at once, then a few more times; kept as the merchant's alert log."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+", verbose_name=_("merchant"))
    event = models.ForeignKey(
        "cardshop.WebhookEvent", on_delete=models.CASCADE, related_name="alerts", verbose_name=_("event")
    )
    channel = models.CharField(_("channel"), max_length=10, choices=AlertChannel.choices)
    kind = models.CharField(_("kind"), max_length=10, choices=AlertKind.choices)
    state = models.CharField(_("state"), max_length=8, choices=AlertState.choices, default=AlertState.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=300, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("merchant alert")
        verbose_name_plural = _("merchant alerts")
        ordering = ["-pk"]
        constraints = [models.UniqueConstraint(fields=["event", "channel"], name="merchant_alert_once")]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=models.Q(state="pending"), name="merchant_alert_due")
        ]

    def __str__(self) -> str:
        return f"{self.kind} by {self.channel}: {self.state}"
