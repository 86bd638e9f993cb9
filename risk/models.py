"""Risk's rows: rule set versions and their rules, block and allow lists, the operator's settings, and every
assessment with what it saw. Must not import cardshop, payments or settlement (an order is a plain number)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from risk.rules import RuleInvalid, rule_compile


class Action(models.TextChoices):
    """What an assessment decides, least severe first (the order decisions combine in: risk.decisions)."""

    ALLOW = "allow", _("allow")
    CHALLENGE = "challenge", _("challenge")
    REVIEW = "review", _("review")
    BLOCK = "block", _("block")


class VersionState(models.TextChoices):
    DRAFT = "draft", _("draft")
    LIVE = "live", _("live")
    RETIRED = "retired", _("retired")


class RuleSetVersion(models.Model):
    """One version of the rule set. One is live, at most one is a draft (the one operators edit); publishing a
    draft retires the live one. A published version never changes: what an assessment saw stays known."""

    number = models.PositiveIntegerField(_("version"), unique=True)
    state = models.CharField(_("state"), max_length=8, choices=VersionState.choices, default=VersionState.DRAFT)
    note = models.CharField(_("note"), max_length=200, blank=True)
    backtest = models.JSONField(_("backtest"), default=dict, blank=True, editable=False)
    created_by = models.CharField(_("created by"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    published_by = models.CharField(_("published by"), max_length=150, blank=True)
    published_at = models.DateTimeField(_("published at"), null=True, blank=True)

    class Meta:
        verbose_name = _("rule set version")
        verbose_name_plural = _("rule set versions")
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["state"], condition=models.Q(state="live"), name="risk_one_live_version"),
            models.UniqueConstraint(fields=["state"], condition=models.Q(state="draft"), name="risk_one_draft_version"),
        ]
        permissions = [("publish_ruleset", _("Can publish a rule set version"))]

    def __str__(self) -> str:
        return f"v{self.number} ({self.state})"


class Rule(models.Model):
    """One rule: an expression over the features (risk.schema) in rule-engine's language, never Python."""

    version = models.ForeignKey(
        RuleSetVersion, verbose_name=_("version"), on_delete=models.CASCADE, related_name="rules"
    )
    name = models.CharField(_("name"), max_length=80)
    expression = models.TextField(
        _("expression"),
        help_text=_("e.g. ip_orders_1h > 5 and not buyer_paid_before; the feature names are listed below"),
    )
    action = models.CharField(_("action"), max_length=10, choices=Action.choices)
    reason_code = models.SlugField(_("reason code"), max_length=60, help_text=_("stored with every decision it makes"))
    priority = models.PositiveIntegerField(_("priority"), default=100, help_text=_("lower runs first"))
    enabled = models.BooleanField(_("enabled"), default=True)

    class Meta:
        verbose_name = _("rule")
        verbose_name_plural = _("rules")
        ordering = ["version", "priority", "pk"]
        constraints = [models.UniqueConstraint(fields=["version", "name"], name="risk_rule_name_once_per_version")]

    def __str__(self) -> str:
        return f"{self.name} -> {self.action}"

    def clean(self) -> None:
        """Refused at save, with the reason shown on the field: a syntax error, an unknown feature, a refused
        operator. A published version's rules cannot be changed."""
        super().clean()
        if self.version_id and self.version.state != VersionState.DRAFT:
            raise ValidationError(_("Only the draft's rules can be edited: make a draft first."))
        try:
            rule_compile(self.expression)
        except RuleInvalid as exc:
            raise ValidationError({"expression": str(exc)}) from exc


class ListKind(models.TextChoices):
    BLOCK = "block", _("block list")
    ALLOW = "allow", _("allow list")


class ListField(models.TextChoices):
    EMAIL = "email", _("email")
    DOMAIN = "domain", _("email domain")
    IP = "ip", _("IP address or network")
    DEVICE = "device", _("device")


class ListEntry(models.Model):
    """One value on the block or allow list. Emails and domains are kept lower case; an IP entry may be a network
    (CIDR), and an IPv6 address is matched by its /64 like the counters."""

    kind = models.CharField(_("list"), max_length=8, choices=ListKind.choices)
    field = models.CharField(_("what"), max_length=8, choices=ListField.choices)
    value = models.CharField(_("value"), max_length=254)
    note = models.CharField(_("why"), max_length=200, blank=True)
    created_by = models.CharField(_("added by"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("added at"), auto_now_add=True)

    class Meta:
        verbose_name = _("list entry")
        verbose_name_plural = _("list entries")
        ordering = ["kind", "field", "value"]
        constraints = [models.UniqueConstraint(fields=["kind", "field", "value"], name="risk_list_entry_once")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.field}:{self.value}"


class RiskSettings(models.Model):
    """The operator's thresholds and what to do when the counters cannot be read (one row)."""

    degraded_allow_below_minor = models.PositiveBigIntegerField(
        _("when the counters are down, allow orders below (minor units)"),
        default=5000,
        help_text=_("orders at or above this amount wait for review instead; the degradation is logged"),
    )
    score_review = models.FloatField(_("score from which an order is reviewed"), default=0.5)
    score_block = models.FloatField(_("score from which an order is blocked"), default=0.9)
    challenge_kind = models.CharField(
        _("how a challenged buyer proves itself"),
        max_length=12,
        choices=[
            ("email_code", _("one-time code by email")),
            ("captcha", _("image captcha")),
        ],
        default="email_code",
    )
    hoarding_share = models.FloatField(
        _("stock share held by unpaid orders that challenges new buyers"),
        default=0.5,
        help_text=_("read by the default rules as the feature product_pending_share"),
    )

    class Meta:
        verbose_name = _("risk settings")
        verbose_name_plural = _("risk settings")

    def __str__(self) -> str:
        return str(_("risk settings"))


class Stage(models.TextChoices):
    CHECKOUT = "checkout", _("checkout")
    PAYMENT = "payment", _("payment start")


class Assessment(models.Model):
    """One decision with everything it saw: features, matched rules, score, versions. `order_no` is filled in
    when the checkout it assessed made an order (a block makes none)."""

    stage = models.CharField(_("stage"), max_length=10, choices=Stage.choices)
    order_no = models.CharField(_("order no"), max_length=40, blank=True, db_index=True)
    decision = models.CharField(_("decision"), max_length=10, choices=Action.choices)
    currency = models.CharField(_("currency"), max_length=3, blank=True)  # of the amounts among the features
    reasons = models.JSONField(_("reason codes"), default=list)
    score = models.FloatField(_("score"), null=True, blank=True)
    shadow_score = models.FloatField(_("shadow model's score"), null=True, blank=True)
    features = models.JSONField(_("features"), default=dict)
    ruleset_version = models.PositiveIntegerField(_("rule set version"), null=True, blank=True)
    model_version = models.CharField(_("model version"), max_length=64, blank=True)
    degraded = models.BooleanField(_("counters unavailable"), default=False)
    elapsed_us = models.PositiveIntegerField(_("took (µs)"), default=0)
    created_at = models.DateTimeField(_("at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("assessment")
        verbose_name_plural = _("assessments")
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.stage} {self.decision} {self.order_no or self.pk}"


class ChallengeKind(models.TextChoices):
    EMAIL_CODE = "email_code", _("one-time code by email")
    CAPTCHA = "captcha", _("image captcha")


class Challenge(models.Model):
    """A checkout risk wants proven first. Nothing is reserved while it waits: the checkout to resume is kept in
    `payload` (the query password only as its hash). The answer is kept as a keyed hash, bound to the token;
    a captcha's picture is kept to be shown again, its text never."""

    token = models.CharField(_("token"), max_length=43, unique=True)
    kind = models.CharField(_("kind"), max_length=12, choices=ChallengeKind.choices)
    answer_hash = models.CharField(max_length=64, editable=False)
    image = models.BinaryField(editable=False, default=b"")
    attempts_left = models.PositiveSmallIntegerField(_("attempts left"), default=5)
    payload = models.JSONField(_("checkout to resume"), default=dict)
    assessment = models.ForeignKey(Assessment, on_delete=models.PROTECT, related_name="+", verbose_name=_("assessment"))
    expires_at = models.DateTimeField(_("expires at"))
    passed_at = models.DateTimeField(_("passed at"), null=True, blank=True)
    consumed_at = models.DateTimeField(_("used at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("challenge")
        verbose_name_plural = _("challenges")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.token[:8]}"
