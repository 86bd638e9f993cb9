"""What the merchant REST API keeps: the merchants' API keys and the answers it gave to idempotent POSTs."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils.translation import gettext_lazy as _

from core.models import Merchant


class ApiScope(models.TextChoices):
    READ = "read", _("read")
    WRITE = "write", _("write")
    REFUNDS = "refunds", _("refunds")
    PAYOUTS = "payouts", _("payouts")
    SECRETS = "secrets", _("delivered secrets")


class ApiKeyMode(models.TextChoices):
    LIVE = "live", _("live")
    TEST = "test", _("test (simulators)")


class ApiKey(models.Model):
    """A merchant's key, shown once when made. Only its prefix (the lookup), a keyed hash of the whole key and
    its last four characters are kept, so neither the database nor the admin can show it again."""

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+", verbose_name=_("merchant"))
    name = models.CharField(_("name"), max_length=80)
    mode = models.CharField(_("mode"), max_length=4, choices=ApiKeyMode.choices, default=ApiKeyMode.LIVE)
    prefix = models.CharField(_("prefix"), max_length=24, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    last4 = models.CharField(_("last four"), max_length=4, editable=False)
    scopes = models.JSONField(_("scopes"), default=list)
    created_by = models.CharField(_("created by"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        """How the key is shown after it was made: its prefix and last four, the middle hidden."""
        return f"{self.prefix}…{self.last4}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IdempotencyState(models.TextChoices):
    STARTED = "started", _("running")
    DONE = "done", _("answered")


class IdempotencyRecord(models.Model):
    """One `Idempotency-Key` of one merchant: what the request was (a fingerprint of method, path and body) and,
    once answered, the answer, replayed to a retry for 24 hours (the sweeper deletes older rows)."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=8, choices=IdempotencyState.choices, default=IdempotencyState.STARTED)
    status_code = models.PositiveSmallIntegerField(null=True)
    body = models.JSONField(null=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["merchant", "key"], name="api_idempotency_key_unique")]

    def __str__(self) -> str:
        return f"{self.merchant_id}:{self.key}"
