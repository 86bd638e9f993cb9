"""Channel accounts, payments (FSM) and the provider notification inbox."""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from core.fields import EncryptedTextField
from core.money import Money
from payments import gateways
from payments.contracts import PaymentStatus, RefundStatus, SplitStatus

# Providers known to keep their fee when a payment is refunded: a new account of theirs starts with
# refund_returns_fee off (an operator can change it).
FEE_KEPT_ON_REFUND = frozenset({"stripe"})


def refund_returns_fee_default(code: str) -> bool:
    return code not in FEE_KEPT_ON_REFUND


class ChannelAccount(models.Model):
    """One set of credentials at one provider. Credentials are encrypted and never shown back."""

    code = models.CharField(_("channel"), max_length=32, db_index=True)
    name = models.CharField(_("name"), max_length=120)
    merchant_no = models.CharField(_("provider merchant id"), max_length=64)
    base_url = models.URLField(_("gateway base URL"))
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    credentials = EncryptedTextField(_("credentials (JSON)"), blank=True, default="")
    enabled = models.BooleanField(_("enabled"), default=True)
    priority = models.IntegerField(_("priority"), default=100, help_text=_("lower first; breaks routing ties"))
    # What routing weighs: the fee a payment costs here and the amounts this account may take.
    fee_rate_bp = models.PositiveIntegerField(_("fee rate (basis points)"), default=0)
    fee_fixed_minor = models.PositiveIntegerField(_("fixed fee (minor units)"), default=0)
    min_amount_minor = models.PositiveBigIntegerField(_("minimum amount (minor units)"), null=True, blank=True)
    max_amount_minor = models.PositiveBigIntegerField(_("maximum amount (minor units)"), null=True, blank=True)
    daily_cap_minor = models.PositiveBigIntegerField(_("daily volume cap (minor units)"), null=True, blank=True)
    # Alipay and WeChat Pay give their fee back on a refund (pro rata); Stripe keeps it. The ledger books which.
    refund_returns_fee = models.BooleanField(
        _("returns its fee on refund"),
        default=True,
        help_text=_("the provider gives back its fee (pro rata) when a payment is refunded"),
    )
    # Channel-side splitting (issue 12). An account the merchant owns at the provider, the platform acting as its
    # service provider: the buyer's money lands in the merchant's own balance, and the provider splits the
    # platform's share off each trade to `split_to`, so the platform never holds the merchant's money (二清).
    owner_merchant = models.ForeignKey(
        "core.Merchant",
        verbose_name=_("owned by merchant"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_(
            "the merchant's own account at the provider: only that merchant's payments go here, and the provider "
            "splits the platform's share off each one"
        ),
    )
    split_to = models.ForeignKey(
        "self",
        verbose_name=_("the platform's share goes to"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("the platform's own account at the same provider that receives the split"),
    )
    # This account as a split receiver: its id and id type in the provider's words (Alipay userId 2088...,
    # WeChat Pay MERCHANT_ID = the mchid) and the account holder's registered name.
    receiver_id = models.CharField(
        _("receiver id at the provider"),
        max_length=64,
        blank=True,
        help_text=_("for a platform account that receives splits: Alipay userId (2088...), WeChat Pay mchid"),
    )
    receiver_type = models.CharField(
        _("receiver id type"),
        max_length=32,
        blank=True,
        help_text=_("Alipay: userId or loginName; WeChat Pay: MERCHANT_ID"),
    )
    receiver_name = models.CharField(_("receiver's registered name"), max_length=128, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("channel account")
        verbose_name_plural = _("channel accounts")
        ordering = ["priority", "pk"]
        # Adding or editing an account (where credentials go) and steering traffic are separate powers.
        permissions = [
            ("edit_channel_account", _("Can add or edit channel accounts")),
            ("control_breaker", _("Can open, close or reset a channel's circuit breaker")),
        ]

    def __str__(self) -> str:
        return f"{self.code}:{self.name}"

    def clean(self) -> None:
        super().clean()
        gateways.base_url_check(code=self.code, base_url=self.base_url)
        if self.owner_merchant_id is None:
            if self.split_to_id is not None:
                raise ValidationError({"split_to": _("Only a merchant's own account splits to the platform.")})
            return
        target = self.split_to
        if target is None:
            raise ValidationError({"split_to": _("A merchant's own account needs the platform's account to split to.")})
        if target.code != self.code or target.owner_merchant_id is not None or target.pk == self.pk:
            raise ValidationError({"split_to": _("Split to a platform account of the same provider.")})
        if not target.receiver_id or not target.receiver_type:
            raise ValidationError({"split_to": _("That account has no receiver id at the provider.")})

    def credentials_dict(self) -> dict[str, str]:
        try:
            data = json.loads(self.credentials or "{}")
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


S = PaymentStatus
# States in which the provider holds (or held) the buyer's money for this payment.
PAID_STATES = (S.SUCCEEDED, S.REFUNDING, S.REFUNDED)
# The one trade a buyer may be paying for a reference: in flight at the provider, or shown to the buyer.
PAYABLE_STATES = (S.CREATED, S.PENDING)
# A provider's "paid" wins over anything we concluded ourselves: a close whose reply was lost, a failure report.
UNPAID_STATES = (S.CREATED, S.PENDING, S.UNKNOWN, S.FAILED, S.CLOSED)


class Payment(ConcurrentTransitionMixin, models.Model):
    """One attempt to collect `amount` for `reference` (an order number) through one channel account."""

    out_trade_no = models.CharField(_("our trade no"), max_length=40, unique=True)
    reference = models.CharField(_("reference"), max_length=40, db_index=True)
    account = models.ForeignKey(
        ChannelAccount, on_delete=models.PROTECT, related_name="payments", verbose_name=_("channel account")
    )
    channel_code = models.CharField(_("channel"), max_length=32)
    # The buyer-facing method it was made for (alipay, wxpay, card, bank, qqpay): what the pay page says.
    method = models.CharField(_("payment method"), max_length=16, blank=True)
    amount_minor = models.BigIntegerField(_("amount (minor units)"))
    # What succeeded refunds gave back so far (at most the amount): REFUNDED once it is all of it.
    refunded_minor = models.BigIntegerField(_("refunded (minor units)"), default=0, db_default=0)
    currency = models.CharField(_("currency"), max_length=3)
    status = FSMField(_("status"), default=S.CREATED, choices=S.choices, protected=True)
    # Stripe documents ids of up to 255 characters (a Checkout Session id is 66 today).
    provider_trade_no = models.CharField(_("provider trade no"), max_length=255, null=True, blank=True)
    pay_url = models.URLField(_("pay URL"), max_length=2000, blank=True)
    qr_content = models.CharField(_("QR content"), max_length=2000, blank=True)
    error_code = models.CharField(_("last error"), max_length=64, blank=True)
    # The provider's reason for the buyer's last declined attempt (Stripe's insufficient_funds, WeChat's
    # PAYERROR), kept apart from error_code: a later query timeout overwrites the last error, and is no decline.
    decline_code = models.CharField(_("decline reason"), max_length=64, blank=True)
    # The janitor's schedule: when to ask the provider next, and how many times it already asked.
    next_query_at = models.DateTimeField(_("next query at"), null=True, blank=True)
    query_attempts = models.PositiveIntegerField(_("queries made"), default=0)
    # Why this account: the routing approach and the scores it saw (explainable later), and which try it was.
    routing = models.JSONField(_("routing decision"), default=dict, blank=True)
    attempt = models.PositiveSmallIntegerField(_("attempt"), default=1)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    succeeded_at = models.DateTimeField(_("succeeded at"), null=True, blank=True)
    # Set on a separate collection: money the provider took on that payment's trade under another trade
    # number (a second intent, a provider retry). It is refunded or held for an operator, never dropped.
    collected_on = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name=_("collected on")
    )

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        constraints = [
            # A provider trade can pay one payment only, per channel.
            models.UniqueConstraint(
                fields=["channel_code", "provider_trade_no"],
                name="payment_provider_trade_once",
                condition=models.Q(provider_trade_no__isnull=False),
            ),
            # One payable trade per order at a time: two tabs opening the pay page make one trade, not two.
            models.UniqueConstraint(
                fields=["reference"],
                name="payment_one_payable_per_reference",
                condition=models.Q(status__in=PAYABLE_STATES),
            ),
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="payment_amount_positive"),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="payment_status_created"),
            models.Index(
                fields=["next_query_at"], name="payment_query_due", condition=models.Q(next_query_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return self.out_trade_no

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def wire_out_trade_no(self) -> str:
        """The out_trade_no the provider knows this money by (a separate collection shares its payment's)."""
        return self.collected_on.out_trade_no if self.collected_on_id else self.out_trade_no

    @transition(field=status, source=S.CREATED, target=S.PENDING)
    def mark_pending(self, *, provider_trade_no: str, pay_url: str, qr_content: str) -> None:
        self.provider_trade_no = provider_trade_no or None
        self.pay_url = pay_url
        self.qr_content = qr_content

    @transition(field=status, source=S.CREATED, target=S.UNKNOWN)
    def mark_unknown(self, *, error_code: str) -> None:
        """Only a create can be in doubt: a query that times out learns nothing and changes nothing."""
        self.error_code = error_code

    @transition(field=status, source=UNPAID_STATES, target=S.SUCCEEDED)
    def succeed(self, *, provider_trade_no: str) -> None:
        self.provider_trade_no = provider_trade_no or None  # "" would collide in the one-trade-per-payment constraint
        self.succeeded_at = timezone.now()
        self.next_query_at = None

    @transition(field=status, source=[S.CREATED, S.UNKNOWN], target=S.FAILED)
    def fail(self, *, error_code: str, decline_code: str = "") -> None:
        self.error_code = error_code
        self.decline_code = decline_code or self.decline_code
        self.next_query_at = None

    def note_decline(self, *, decline_code: str) -> None:
        """An attempt on a trade the buyer can still pay was declined: not a transition, the trade stays open."""
        self.error_code = decline_code
        self.decline_code = decline_code

    @transition(field=status, source=[S.PENDING, S.UNKNOWN], target=S.CLOSED)
    def close(self) -> None:
        self.next_query_at = None

    @transition(field=status, source=S.SUCCEEDED, target=S.REFUNDING)
    def refund_start(self) -> None:
        pass

    @transition(field=status, source=S.REFUNDING, target=S.REFUNDED)
    def refund_complete(self) -> None:
        pass

    @transition(field=status, source=S.REFUNDING, target=S.SUCCEEDED)
    def refund_abort(self) -> None:
        """The provider refused the refund: the money is still with us, an operator may try again."""

    @transition(field=status, source=S.REFUNDING, target=S.SUCCEEDED)
    def refund_partly_done(self) -> None:
        """A refund of part of it succeeded: the rest is still paid (and may be refunded later)."""


R = RefundStatus


class Refund(ConcurrentTransitionMixin, models.Model):
    """A full refund of one payment. `refund_no` is our idempotency key at the provider."""

    refund_no = models.CharField(_("refund no"), max_length=40, unique=True)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds", verbose_name=_("payment"))
    amount_minor = models.BigIntegerField(_("amount (minor units)"))
    currency = models.CharField(_("currency"), max_length=3)
    status = FSMField(_("status"), default=R.REQUESTED, choices=R.choices, protected=True)
    provider_refund_no = models.CharField(_("provider refund no"), max_length=64, blank=True)
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    requested_by = models.CharField(_("requested by"), max_length=150, blank=True)
    error_code = models.CharField(_("last error"), max_length=64, blank=True)
    next_query_at = models.DateTimeField(_("next query at"), null=True, blank=True)
    query_attempts = models.PositiveIntegerField(_("queries made"), default=0)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    succeeded_at = models.DateTimeField(_("succeeded at"), null=True, blank=True)

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        constraints = [
            # One refund on its way per payment at a time (a second click finds it); the ones that succeeded add
            # up to at most the payment (Payment.refunded_minor, checked under the payment's lock).
            models.UniqueConstraint(
                fields=["payment"],
                name="refund_one_in_flight_per_payment",
                condition=models.Q(status__in=[R.REQUESTED, R.PENDING, R.UNKNOWN]),
            ),
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="refund_amount_positive"),
        ]

    def __str__(self) -> str:
        return self.refund_no

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @transition(field=status, source=[R.REQUESTED, R.UNKNOWN], target=R.PENDING)
    def mark_pending(self, *, provider_refund_no: str) -> None:
        self.provider_refund_no = provider_refund_no or self.provider_refund_no

    @transition(field=status, source=[R.REQUESTED, R.PENDING], target=R.UNKNOWN)
    def mark_unknown(self, *, error_code: str) -> None:
        self.error_code = error_code

    @transition(field=status, source=[R.REQUESTED, R.PENDING, R.UNKNOWN], target=R.SUCCEEDED)
    def succeed(self, *, provider_refund_no: str) -> None:
        self.provider_refund_no = provider_refund_no or self.provider_refund_no
        self.succeeded_at = timezone.now()
        self.next_query_at = None

    @transition(field=status, source=[R.REQUESTED, R.PENDING, R.UNKNOWN], target=R.FAILED)
    def fail(self, *, error_code: str) -> None:
        self.error_code = error_code
        self.next_query_at = None


class ProviderNotification(models.Model):
    """Inbox of applied provider events; the unique key makes a replay a no-op."""

    channel_code = models.CharField(_("channel"), max_length=32)
    event_key = models.CharField(_("provider event key"), max_length=128)
    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="notifications", verbose_name=_("payment")
    )
    params = models.JSONField(_("parameters (signature removed)"))
    outcome = models.CharField(_("outcome"), max_length=32)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)

    class Meta:
        verbose_name = _("provider notification")
        verbose_name_plural = _("provider notifications")
        constraints = [
            models.UniqueConstraint(fields=["channel_code", "event_key"], name="notification_once_per_event"),
        ]

    def __str__(self) -> str:
        return f"{self.channel_code}:{self.event_key}"


class RoutingRule(models.Model):
    """An operator's pin or exclusion of one channel account, for one merchant, one product, or everything.

    Product rules beat merchant rules beat global ones; payments knows products only by reference.
    """

    class Kind(models.TextChoices):
        PIN = "pin", _("pin (use only pinned accounts)")
        EXCLUDE = "exclude", _("exclude")

    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices)
    account = models.ForeignKey(
        ChannelAccount, on_delete=models.CASCADE, related_name="routing_rules", verbose_name=_("channel account")
    )
    merchant = models.ForeignKey(
        "core.Merchant", on_delete=models.CASCADE, null=True, blank=True, related_name="+", verbose_name=_("merchant")
    )
    product_ref = models.CharField(_("product (slug)"), max_length=64, blank=True)
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("routing rule")
        verbose_name_plural = _("routing rules")
        constraints = [
            models.UniqueConstraint(fields=["kind", "account", "merchant", "product_ref"], name="routing_rule_once")
        ]

    def __str__(self) -> str:
        scope = self.product_ref or (self.merchant and str(self.merchant)) or "all"
        return f"{self.kind} {self.account} for {scope}"


class RoutingSettings(models.Model):
    """The operator's routing knobs (one row). Read per decision through a short cache."""

    sr_threshold = models.FloatField(_("eliminate below success rate"), default=0.5)
    latency_cap_ms = models.FloatField(_("eliminate above p95 latency (ms)"), default=5000.0)
    exploration_share = models.FloatField(_("exploration share"), default=0.1)
    small_below_minor = models.PositiveBigIntegerField(
        _("cheapest channel below (minor units)"), null=True, blank=True, default=1000
    )
    # Off by default: "highest success rate whatever the fee" sent big tickets to the dearest card channel in
    # bench/routing_sim.py; the expected value already weighs reliability against fees.
    large_above_minor = models.PositiveBigIntegerField(
        _("most reliable channel above (minor units)"), null=True, blank=True, default=None
    )
    max_attempts = models.PositiveSmallIntegerField(_("channels tried per payment"), default=3)
    margin_bp = models.PositiveIntegerField(
        _("merchant margin (basis points)"),
        default=2000,
        help_text=_("what a success earns, for expected value = success rate x (amount x margin - fee)"),
    )
    sr_tolerance = models.FloatField(
        _("success rate tolerance"),
        default=0.05,
        help_text=_("accounts this close to the best success rate count as equally reliable: the cheapest leads"),
    )
    cheapest_sr_tolerance = models.FloatField(
        _("cheapest tier: success rate tolerance"),
        default=0.05,
        help_text=_("small payments go to the cheapest account within this of the best success rate"),
    )
    breaker_failures = models.PositiveSmallIntegerField(_("breaker: consecutive failures to open"), default=5)
    breaker_open_seconds = models.PositiveIntegerField(_("breaker: seconds open before probing"), default=30)
    breaker_probe_share = models.FloatField(_("breaker: share of traffic that probes"), default=0.1)
    extra_payments_auto_refund = models.BooleanField(
        _("refund a second payment automatically"),
        default=True,
        help_text=_(
            "a payment that succeeds for an order already paid is refunded through its own channel; "
            "off: it is held for an operator (order list filter: paid more than once)"
        ),
    )

    class Meta:
        verbose_name = _("routing settings")
        verbose_name_plural = _("routing settings")

    def __str__(self) -> str:
        return str(_("routing settings"))


SP = SplitStatus


class TradeSplit(ConcurrentTransitionMixin, models.Model):
    """The provider's split of one paid trade on a merchant's own account: the platform's share moved to
    `receiver` (Alipay royalty, WeChat Pay profit sharing), the rest released to the merchant. `split_no` is our
    idempotency key at the provider (Alipay out_request_no, WeChat out_order_no): never resent under another."""

    split_no = models.CharField(_("split no"), max_length=40, unique=True)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="splits", verbose_name=_("payment"))
    receiver = models.ForeignKey(
        ChannelAccount, on_delete=models.PROTECT, related_name="+", verbose_name=_("received by")
    )
    amount_minor = models.BigIntegerField(_("platform's share (minor units)"))
    currency = models.CharField(_("currency"), max_length=3)
    status = FSMField(_("status"), default=SP.CREATED, choices=SP.choices, protected=True)
    provider_split_no = models.CharField(_("provider's split no"), max_length=64, blank=True)
    provider_status = models.CharField(_("provider's status"), max_length=32, blank=True)
    failure_reason = models.CharField(_("failure reason"), max_length=200, blank=True)
    send_attempts = models.PositiveSmallIntegerField(_("times sent"), default=0)
    next_query_at = models.DateTimeField(_("next query at"), null=True, blank=True)
    query_attempts = models.PositiveIntegerField(_("queries made"), default=0)
    returned_by = models.CharField(_("returned by refund"), max_length=40, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    succeeded_at = models.DateTimeField(_("succeeded at"), null=True, blank=True)

    class Meta:
        verbose_name = _("provider split")
        verbose_name_plural = _("provider splits")
        ordering = ["-created_at", "-pk"]
        constraints = [
            # One live split per trade: a replayed paid path or a second click cannot split it twice.
            models.UniqueConstraint(
                fields=["payment"],
                name="tradesplit_one_live_per_payment",
                condition=~models.Q(status__in=[SP.FAILED, SP.CANCELLED]),
            ),
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="tradesplit_amount_positive"),
        ]
        indexes = [
            models.Index(
                fields=["next_query_at"],
                condition=models.Q(status__in=[SP.CREATED, SP.SUBMITTED, SP.UNKNOWN]),
                name="tradesplit_due",
            ),
        ]

    def __str__(self) -> str:
        return self.split_no

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @transition(field=status, source=[SP.CREATED, SP.SUBMITTED, SP.UNKNOWN], target=SP.SUBMITTED)
    def mark_submitted(self, *, provider_split_no: str, provider_status: str) -> None:
        self.provider_split_no = provider_split_no or self.provider_split_no
        self.provider_status = provider_status

    @transition(field=status, source=[SP.CREATED, SP.SUBMITTED, SP.UNKNOWN], target=SP.UNKNOWN)
    def mark_unknown(self, *, provider_status: str) -> None:
        """The answer was lost: only a query (or a resend under the same number) resolves it."""
        self.provider_status = provider_status

    @transition(field=status, source=[SP.CREATED, SP.SUBMITTED, SP.UNKNOWN], target=SP.SUCCEEDED)
    def succeed(self, *, provider_split_no: str, provider_status: str) -> None:
        self.provider_split_no = provider_split_no or self.provider_split_no
        self.provider_status = provider_status
        self.succeeded_at = timezone.now()
        self.next_query_at = None

    @transition(field=status, source=[SP.CREATED, SP.SUBMITTED, SP.UNKNOWN], target=SP.FAILED)
    def fail(self, *, reason: str, provider_status: str = "") -> None:
        self.failure_reason = reason[:200]
        self.provider_status = provider_status
        self.next_query_at = None

    @transition(field=status, source=SP.CREATED, target=SP.CANCELLED)
    def cancel(self, *, reason: str) -> None:
        """Refunded before it was sent: there is nothing to split."""
        self.failure_reason = reason[:200]
        self.next_query_at = None
