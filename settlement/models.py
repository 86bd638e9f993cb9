"""The ledger's rows: fee plans, accounts, transactions and their entries. Must not import cardshop.

Sign convention: one signed column, `LedgerEntry.amount_minor`, debit positive and credit negative, so the
entries of a transaction sum to zero per currency and every account's entries sum to its raw (debit-normal)
balance. Operators read balances on each account's normal side (`AccountKind.credit_normal`): what the platform
owes a merchant is a positive "merchant available", not a negative number.
"""

from __future__ import annotations

from datetime import time

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from core.models import agent_max_depth
from core.money import Money

PLATFORM_PARTY_ID = 0  # the platform is one party: its accounts carry party kind "platform" and this id


class PartyKind(models.TextChoices):
    PLATFORM = "platform", _("platform")
    AGENT = "agent", _("agent")
    MERCHANT = "merchant", _("merchant")
    CHANNEL_ACCOUNT = "channel_account", _("channel account")


class AccountKind(models.TextChoices):
    CHANNEL_CLEARING = "channel_clearing", _("channel clearing")
    CHANNEL_FEE_EXPENSE = "channel_fee_expense", _("channel fee expense")
    PLATFORM_REVENUE = "platform_revenue", _("platform fee revenue")
    AGENT_COMMISSION_PAYABLE = "agent_commission_payable", _("agent commission payable")
    MERCHANT_PENDING = "merchant_pending", _("merchant pending")
    MERCHANT_AVAILABLE = "merchant_available", _("merchant available")
    MERCHANT_RESERVE = "merchant_reserve", _("merchant reserve")
    PAYOUTS_IN_TRANSIT = "payouts_in_transit", _("payouts in transit")
    REFUNDS_PAYABLE = "refunds_payable", _("refunds payable")
    SUSPENSE = "suspense", _("suspense")
    MERCHANT_OWED = "merchant_owed", _("merchant owed")

    @property
    def credit_normal(self) -> bool:
        """Liabilities and revenue grow by credits; the channel's receivable, the fee expense and what a merchant
        owes the platform (a refund after its money was released) by debits."""
        return self not in (AccountKind.CHANNEL_CLEARING, AccountKind.CHANNEL_FEE_EXPENSE, AccountKind.MERCHANT_OWED)


# Which party owns each kind of account. Channel fees are the platform's expense, kept per channel account so a
# statement's fees can be matched (and so the busiest expense account is not one row for the whole shop).
ACCOUNT_PARTIES: dict[str, tuple[str, ...]] = {
    AccountKind.CHANNEL_CLEARING: (PartyKind.CHANNEL_ACCOUNT,),
    AccountKind.CHANNEL_FEE_EXPENSE: (PartyKind.CHANNEL_ACCOUNT,),
    AccountKind.PLATFORM_REVENUE: (PartyKind.PLATFORM,),
    AccountKind.AGENT_COMMISSION_PAYABLE: (PartyKind.AGENT,),
    AccountKind.MERCHANT_PENDING: (PartyKind.MERCHANT,),
    AccountKind.MERCHANT_AVAILABLE: (PartyKind.MERCHANT,),
    AccountKind.MERCHANT_RESERVE: (PartyKind.MERCHANT,),
    AccountKind.PAYOUTS_IN_TRANSIT: (PartyKind.MERCHANT, PartyKind.AGENT),
    AccountKind.REFUNDS_PAYABLE: (PartyKind.PLATFORM,),
    AccountKind.SUSPENSE: (PartyKind.PLATFORM,),
    AccountKind.MERCHANT_OWED: (PartyKind.MERCHANT,),
}

# Accounts a decision reads (a payout may only spend what is available; money reaching available first pays
# what the merchant owes): their balance is kept on the account row, locked and updated with each posting, and
# neither may go below zero. Every other balance is the sum of the account's entries.
BALANCE_ROW_KINDS: frozenset[str] = frozenset({AccountKind.MERCHANT_AVAILABLE, AccountKind.MERCHANT_OWED})


def _party_kinds_match() -> models.Q:
    """The CHECK that an account's kind belongs to its party's kind (ACCOUNT_PARTIES)."""
    q = models.Q()
    for kind, parties in ACCOUNT_PARTIES.items():
        q |= models.Q(kind=kind, party_kind__in=list(parties))
    return q


class FeeBearer(models.TextChoices):
    PLATFORM = "platform", _("the platform")
    MERCHANT = "merchant", _("the merchant")


class Cycle(models.TextChoices):
    T0 = "T+0", _("T+0: available at once")
    T1 = "T+1", _("T+1: next working day")
    DN = "D+N", _("D+N: after N calendar days")


class FeePlan(models.Model):
    """What the platform charges one merchant in one currency, and who shares it. One active plan per pair.

    `agent_commission_bp` is a JSON list of basis points, level 1 (the merchant's own agent) first: the number of
    levels is a setting, not a schema, and a plan is read whole for every sale, so one row with a short list
    beats a child table (no join, no formset, one `full_clean`). Its shape is checked in clean() and the service.
    """

    merchant = models.ForeignKey(
        "core.Merchant", verbose_name=_("merchant"), on_delete=models.PROTECT, related_name="fee_plans"
    )
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    platform_rate_bp = models.PositiveIntegerField(_("platform rate (basis points)"), default=0)
    platform_fixed_minor = models.PositiveBigIntegerField(_("platform fixed fee per order (minor units)"), default=0)
    cycle = models.CharField(_("settlement cycle"), max_length=3, choices=Cycle.choices, default=Cycle.T1)
    n_days = models.PositiveSmallIntegerField(_("days (D+N)"), default=0)
    reserve_bp = models.PositiveIntegerField(_("rolling reserve (basis points of each sale)"), default=0)
    reserve_days = models.PositiveSmallIntegerField(_("reserve held (days)"), default=0)
    agent_commission_bp = models.JSONField(
        _("agent commissions (basis points per level)"),
        default=list,
        blank=True,
        help_text=_("level 1 is the merchant's own agent, level 2 its parent, ...; paid out of the platform fee"),
    )
    refund_fee_borne_by = models.CharField(
        _("channel fee kept on a refund is borne by"),
        max_length=8,
        choices=FeeBearer.choices,
        default=FeeBearer.PLATFORM,
        help_text=_("some channels (Stripe) keep their fee when a payment is refunded; someone pays it"),
    )
    split_at_provider = models.BooleanField(
        _("split at the provider"),
        default=False,
        help_text=_(
            "the buyer pays into the merchant's own account at the provider, which splits the platform's fee off "
            "each sale (Alipay royalty, WeChat Pay profit sharing): the platform never holds the merchant's money "
            "and pays it out of nothing; the merchant bears its own channel fee"
        ),
    )
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("fee plan")
        verbose_name_plural = _("fee plans")
        ordering = ["merchant_id", "currency", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "currency"],
                condition=models.Q(is_active=True),
                name="settlement_feeplan_one_active",
            ),
            models.CheckConstraint(
                condition=models.Q(platform_rate_bp__lte=10000)
                & models.Q(reserve_bp__lte=10000 - models.F("platform_rate_bp")),
                name="settlement_feeplan_rates_within_sale",
            ),
            models.CheckConstraint(
                condition=models.Q(cycle="D+N") | models.Q(n_days=0),
                name="settlement_feeplan_n_days_only_for_dn",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.merchant_id}/{self.currency}: {self.platform_rate_bp} bp + {self.platform_fixed_minor}"

    def clean(self) -> None:
        super().clean()
        levels = self.agent_commission_bp
        if not isinstance(levels, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in levels):
            raise ValidationError({"agent_commission_bp": _("Give a list of whole basis points, e.g. [200, 100].")})
        if any(v < 0 for v in levels):
            raise ValidationError({"agent_commission_bp": _("Commissions cannot be negative.")})
        if len(levels) > agent_max_depth():
            raise ValidationError({"agent_commission_bp": _("At most %(n)d agent levels.") % {"n": agent_max_depth()}})
        # Commissions are basis points of the sale paid out of the platform fee; the fee is at least its rate
        # part, so they can exceed it on some sale exactly when their sum exceeds the platform rate.
        rate, reserve = self.platform_rate_bp or 0, self.reserve_bp or 0
        if sum(levels) > rate:
            message = _("Agent commissions (%(sum)d bp) could exceed the platform fee (%(rate)d bp of each sale).") % {
                "sum": sum(levels),
                "rate": rate,
            }
            raise ValidationError({"agent_commission_bp": ValidationError(message, code="commission_above_fee")})
        if rate + reserve > 10000:
            raise ValidationError(
                {"reserve_bp": _("The platform rate and the reserve together cannot exceed the sale.")}
            )
        if self.cycle != Cycle.DN and self.n_days:
            raise ValidationError({"n_days": _("Days apply to the D+N cycle only.")})
        if self.split_at_provider and reserve:
            # The money is in the merchant's own account: there is nothing of it the platform could hold back.
            raise ValidationError({"reserve_bp": _("A plan split at the provider holds no reserve.")})


class LedgerAccount(models.Model):
    """One party's account of one kind in one currency. Accounts are never deleted.

    `balance_minor` (normal side) is kept only for BALANCE_ROW_KINDS and is NULL elsewhere; `no_overdraft`
    accounts need such a row, and the database refuses a negative one.
    """

    party_kind = models.CharField(_("party kind"), max_length=16, choices=PartyKind.choices)
    party_id = models.PositiveBigIntegerField(_("party id"))
    kind = models.CharField(_("account kind"), max_length=32, choices=AccountKind.choices)
    currency = models.CharField(_("currency"), max_length=3)
    no_overdraft = models.BooleanField(_("no overdraft"), default=False)
    balance_minor = models.BigIntegerField(_("balance (minor units)"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("ledger account")
        verbose_name_plural = _("ledger accounts")
        ordering = ["party_kind", "party_id", "kind", "currency"]
        constraints = [
            models.UniqueConstraint(
                fields=["party_kind", "party_id", "kind", "currency"], name="settlement_ledgeraccount_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(no_overdraft=False) | models.Q(balance_minor__isnull=False, balance_minor__gte=0),
                name="settlement_ledgeraccount_no_overdraft",
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=sorted(BALANCE_ROW_KINDS), balance_minor__isnull=False)
                | (~models.Q(kind__in=sorted(BALANCE_ROW_KINDS)) & models.Q(balance_minor__isnull=True)),
                name="settlement_ledgeraccount_balance_row_kinds",
            ),
            models.CheckConstraint(
                condition=_party_kinds_match(),
                name="settlement_ledgeraccount_party_kind_matches",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.party_kind}:{self.party_id}:{self.kind}:{self.currency}"

    @property
    def credit_normal(self) -> bool:
        return AccountKind(self.kind).credit_normal


class TransactionKind(models.TextChoices):
    SALE = "sale", _("sale")
    SUSPENSE = "suspense", _("suspense")
    REFUND = "refund", _("refund")
    RELEASE = "release", _("release")
    ADJUSTMENT = "adjustment", _("adjustment")
    PAYOUT = "payout", _("payout")
    SPLIT = "split", _("split at the provider")


class LedgerTransaction(models.Model):
    """One balanced, immutable posting. `idempotency_key` is the natural key of what caused it (`sale:<out_trade_no>`).

    `lines_digest` is a hash of the kind, reference and lines, so a replay with the same key is compared in one
    read. On PostgreSQL a trigger refuses UPDATE and DELETE (migration 0001).
    """

    idempotency_key = models.CharField(_("idempotency key"), max_length=200, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=TransactionKind.choices)
    reference = models.CharField(_("reference"), max_length=64, blank=True, db_index=True)
    memo = models.CharField(_("memo or reason"), max_length=255, blank=True)
    lines_digest = models.CharField(_("lines digest"), max_length=64, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("ledger transaction")
        verbose_name_plural = _("ledger transactions")
        ordering = ["-pk"]

    def __str__(self) -> str:
        return self.idempotency_key


class LedgerEntry(models.Model):
    """One line of a transaction: `amount_minor` is signed, debit positive and credit negative, never zero."""

    transaction = models.ForeignKey(
        LedgerTransaction, verbose_name=_("transaction"), on_delete=models.PROTECT, related_name="entries"
    )
    # Indexed with its id (Meta): an account's lines newest first, the statement's keyset pages.
    account = models.ForeignKey(
        LedgerAccount, verbose_name=_("account"), on_delete=models.PROTECT, related_name="entries", db_index=False
    )
    amount_minor = models.BigIntegerField(_("amount (minor units, debit +, credit -)"))
    currency = models.CharField(_("currency"), max_length=3)

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        ordering = ["transaction_id", "pk"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(amount_minor=0), name="settlement_ledgerentry_not_zero"),
        ]
        indexes = [models.Index(fields=["account", "id"], name="settlement_entry_account_id")]

    def __str__(self) -> str:
        return f"{self.account} {self.amount_minor:+d} {self.currency}"


class ReleaseState(models.TextChoices):
    HELD = "held", _("held")
    RELEASED = "released", _("released")
    REVERSED = "reversed", _("reversed by a refund")
    # Split at the provider: the merchant's part is in its own account, released by the provider's split.
    AT_PROVIDER = "at_provider", _("at the provider, awaiting its split")
    SPLIT = "split", _("settled by the provider's split")


class SaleRelease(models.Model):
    """When one sale's pending money and its reserve become available, and whether they did.

    Written with the sale posting; `releases_due` moves what is due (one release posting each, keyed by the
    sale's key), a refund marks what it took back as reversed. The row is locked (settlement.locks) by both, so
    a sale's money is released or refunded, never both. Not a ledger row: its states change, its postings don't.
    """

    sale = models.OneToOneField(
        LedgerTransaction, verbose_name=_("sale"), on_delete=models.PROTECT, related_name="release"
    )
    merchant_id = models.PositiveBigIntegerField(_("merchant id"), db_index=True)
    currency = models.CharField(_("currency"), max_length=3)
    channel_account_id = models.PositiveBigIntegerField(_("channel account id"))
    gross_minor = models.BigIntegerField(_("gross (minor units)"))
    channel_fee_minor = models.BigIntegerField(_("channel fee (minor units)"))
    sold_at = models.DateTimeField(
        _("sold at"), help_text=_("when the sale was booked: paid, or delivered out of suspense")
    )
    pending_minor = models.BigIntegerField(_("merchant net (minor units)"))
    pending_due_at = models.DateTimeField(_("pending available at"))
    pending_state = models.CharField(_("pending"), max_length=12, choices=ReleaseState.choices)
    reserve_minor = models.BigIntegerField(_("reserve (minor units)"))
    reserve_due_at = models.DateTimeField(_("reserve available at"))
    reserve_state = models.CharField(_("reserve"), max_length=12, choices=ReleaseState.choices)
    refund_fee_borne_by = models.CharField(_("kept refund fee borne by"), max_length=8, choices=FeeBearer.choices)
    refund_key = models.CharField(_("reversed by"), max_length=200, blank=True)
    # Partial refunds: how much of the gross was refunded, and of each part of the sale (settlement.services.refunds).
    refunded_minor = models.BigIntegerField(_("refunded (minor units)"), default=0, db_default=0)
    refunded_parts = models.JSONField(_("refunded, by part"), default=dict, blank=True, db_default={})
    split_key = models.CharField(_("settled by the provider's split"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("sale release")
        verbose_name_plural = _("sale releases")
        ordering = ["pk"]
        indexes = [
            models.Index(
                fields=["pending_due_at"], condition=models.Q(pending_state="held"), name="settlement_pending_due"
            ),
            models.Index(
                fields=["reserve_due_at"], condition=models.Q(reserve_state="held"), name="settlement_reserve_due"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(pending_minor__gte=0, reserve_minor__gte=0, channel_fee_minor__gte=0),
                name="settlement_salerelease_amounts_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sale_id}: pending {self.pending_state}, reserve {self.reserve_state}"


# --- payouts (issue 12) ------------------------------------------------------------------------------------------


class PayoutState(models.TextChoices):
    CREATED = "created", _("created")  # held in the ledger, not sent yet
    SUBMITTED = "submitted", _("submitted")  # sent; the provider is processing it
    UNKNOWN = "unknown", _("unknown")  # the answer was lost (timeout, 5xx): resolved by query, never resent anew
    PAID = "paid", _("paid")
    FAILED = "failed", _("failed")  # nothing moved: the hold went back to where it was taken from


OPEN_PAYOUT_STATES = (PayoutState.CREATED, PayoutState.SUBMITTED, PayoutState.UNKNOWN)


class PayoutDestination(models.Model):
    """Where one party's payouts in one currency go: a channel account that can pay out, and the payee there."""

    party_kind = models.CharField(_("party kind"), max_length=16, choices=PartyKind.choices)
    party_id = models.PositiveBigIntegerField(_("party id"))
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    channel_account = models.ForeignKey(
        "payments.ChannelAccount", verbose_name=_("paid through"), on_delete=models.PROTECT, related_name="+"
    )
    payee = models.CharField(
        _("payee at the provider"),
        max_length=64,
        help_text=_("Alipay login or user id, WeChat openid, Stripe connected account, bank account number"),
    )
    payee_name = models.CharField(_("payee's real name"), max_length=64)
    frozen = models.BooleanField(_("frozen"), default=False, help_text=_("no payout is made while frozen"))
    frozen_reason = models.CharField(_("why frozen"), max_length=200, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("payout destination")
        verbose_name_plural = _("payout destinations")
        ordering = ["party_kind", "party_id", "currency"]
        constraints = [
            models.UniqueConstraint(
                fields=["party_kind", "party_id", "currency"], name="settlement_payoutdestination_one_per_party"
            ),
            models.CheckConstraint(
                condition=models.Q(party_kind__in=["merchant", "agent"]), name="settlement_payoutdestination_party"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.party_kind}:{self.party_id} {self.currency} -> {self.payee}"


class PayoutSchedule(models.Model):
    """When payouts of one currency run (the cut-off window, shop time) and the smallest amount worth paying."""

    currency = models.CharField(_("currency"), max_length=3, unique=True, default="CNY")
    enabled = models.BooleanField(_("enabled"), default=True)
    minimum_minor = models.PositiveBigIntegerField(_("minimum payout (minor units)"), default=100)
    window_start = models.TimeField(_("payouts start at"), default=time(0, 0))
    window_end = models.TimeField(
        _("cut-off"), default=time(23, 59), help_text=_("no payout is created after this time of the shop's day")
    )

    class Meta:
        verbose_name = _("payout schedule")
        verbose_name_plural = _("payout schedules")
        ordering = ["currency"]

    def __str__(self) -> str:
        return f"{self.currency} {self.window_start:%H:%M}-{self.window_end:%H:%M} >= {self.minimum_minor}"


class Payout(ConcurrentTransitionMixin, models.Model):
    """One transfer of a party's available money to its destination. `payout_no` is the provider's idempotency key:
    a payout is never sent under another number; a FAILED one is retried as a new payout (`retry_of`)."""

    payout_no = models.CharField(_("payout no"), max_length=40, unique=True)
    party_kind = models.CharField(_("party kind"), max_length=16, choices=PartyKind.choices)
    party_id = models.PositiveBigIntegerField(_("party id"))
    currency = models.CharField(_("currency"), max_length=3)
    amount_minor = models.PositiveBigIntegerField(_("amount (minor units)"))
    destination = models.ForeignKey(
        PayoutDestination, verbose_name=_("destination"), on_delete=models.PROTECT, related_name="payouts"
    )
    # Copied when created, so editing the destination never redirects a payout already on its way.
    channel_account_id = models.PositiveBigIntegerField(_("channel account id"))
    payee = models.CharField(_("payee at the provider"), max_length=64)
    payee_name = models.CharField(_("payee's real name"), max_length=64)
    state = FSMField(_("state"), default=PayoutState.CREATED, choices=PayoutState.choices, protected=True)
    provider_payout_no = models.CharField(_("provider's payout no"), max_length=64, blank=True)
    provider_status = models.CharField(_("provider's status"), max_length=32, blank=True)
    failure_reason = models.CharField(_("failure reason"), max_length=200, blank=True)
    submit_attempts = models.PositiveSmallIntegerField(_("times sent"), default=0)
    next_query_at = models.DateTimeField(_("next query"), null=True, blank=True)
    retry_of = models.ForeignKey(
        "self", verbose_name=_("retry of"), null=True, blank=True, on_delete=models.PROTECT, related_name="retries"
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    finished_at = models.DateTimeField(_("paid or failed at"), null=True, blank=True)
    # An outbox flag: a merchant's payout became final and its merchant has not been told yet (the webhook event
    # is made from it, in the transaction that clears it: cardshop.services.webhooks).
    announce_pending = models.BooleanField(default=False, editable=False)

    class Meta:
        verbose_name = _("payout")
        verbose_name_plural = _("payouts")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="settlement_payout_amount_positive"),
            # At most one payout on its way per party and currency: two payout runs racing cannot both hold.
            models.UniqueConstraint(
                fields=["party_kind", "party_id", "currency"],
                condition=models.Q(state__in=["created", "submitted", "unknown"]),
                name="settlement_payout_one_open_per_party",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_query_at"],
                condition=models.Q(state__in=["submitted", "unknown"]),
                name="settlement_payout_query_due",
            ),
            models.Index(fields=["party_kind", "party_id", "id"], name="settlement_payout_party"),
            models.Index(fields=["id"], condition=models.Q(announce_pending=True), name="settlement_payout_announce"),
        ]
        permissions = [("manage_payouts", _("Can freeze parties and retry failed payouts"))]

    def __str__(self) -> str:
        return self.payout_no

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @transition(
        field=state,
        source=[PayoutState.CREATED, PayoutState.SUBMITTED, PayoutState.UNKNOWN],
        target=PayoutState.SUBMITTED,
    )
    def mark_submitted(self, *, provider_payout_no: str, provider_status: str) -> None:
        self.provider_payout_no = provider_payout_no or self.provider_payout_no
        self.provider_status = provider_status

    @transition(
        field=state,
        source=[PayoutState.CREATED, PayoutState.SUBMITTED, PayoutState.UNKNOWN],
        target=PayoutState.UNKNOWN,
    )
    def mark_unknown(self) -> None:
        """The answer was lost: only a query (or a resend under the same number) resolves it."""

    @transition(
        field=state, source=[PayoutState.CREATED, PayoutState.SUBMITTED, PayoutState.UNKNOWN], target=PayoutState.PAID
    )
    def mark_paid(self, *, provider_payout_no: str, provider_status: str) -> None:
        self.provider_payout_no = provider_payout_no or self.provider_payout_no
        self.provider_status = provider_status
        self._finish()

    @transition(
        field=state, source=[PayoutState.CREATED, PayoutState.SUBMITTED, PayoutState.UNKNOWN], target=PayoutState.FAILED
    )
    def mark_failed(self, *, reason: str, provider_status: str = "") -> None:
        self.failure_reason = reason[:200]
        self.provider_status = provider_status
        self._finish()

    def _finish(self) -> None:
        self.next_query_at = None
        self.finished_at = timezone.now()
        self.announce_pending = self.party_kind == PartyKind.MERCHANT  # agents have no webhooks


# --- reconciliation (issue 12) -----------------------------------------------------------------------------------


class ReconState(models.TextChoices):
    RUNNING = "running", _("running")
    DONE = "done", _("done")
    FAILED = "failed", _("failed")  # the statement could not be read whole: run again


class ReconRun(models.Model):
    """One channel account's statement of one day compared with our records. One run per account and day: a
    second run of a finished day changes nothing; a run that stopped part way is run again from the start, and
    the exceptions it already filed are kept (each is unique in its run)."""

    channel_account_id = models.PositiveBigIntegerField(_("channel account id"))
    day = models.DateField(_("statement day"))
    state = models.CharField(_("state"), max_length=8, choices=ReconState.choices, default=ReconState.RUNNING)
    lines_seen = models.PositiveIntegerField(_("statement lines read"), default=0)
    matched = models.PositiveIntegerField(_("matched"), default=0)
    exception_count = models.PositiveIntegerField(_("exceptions"), default=0)
    source_hash = models.CharField(_("statement sha256"), max_length=64, blank=True)
    error = models.CharField(_("error"), max_length=200, blank=True)
    started_at = models.DateTimeField(_("started at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("reconciliation run")
        verbose_name_plural = _("reconciliation runs")
        ordering = ["-day", "channel_account_id"]
        constraints = [
            models.UniqueConstraint(fields=["channel_account_id", "day"], name="settlement_reconrun_one_per_day")
        ]

    def __str__(self) -> str:
        return f"{self.channel_account_id} {self.day}"


class ReconKind(models.TextChoices):
    MISSING_IN_LEDGER = "missing_in_ledger", _("on the statement, not in our records")
    MISSING_AT_CHANNEL = "missing_at_channel", _("in our records, not on the statement")
    AMOUNT = "amount", _("amounts differ")
    CURRENCY = "currency", _("currencies differ")
    STATUS = "status", _("statuses differ")
    FEE = "fee", _("fees differ")
    DUPLICATE = "duplicate", _("on the statement twice")
    TIMING = "timing", _("one-sided near the day's cut-off")
    CONTROL_TOTALS = "control_totals", _("the statement's own totals do not add up")


class ReconExceptionStatus(models.TextChoices):
    OPEN = "open", _("open")
    RESOLVED = "resolved", _("resolved")
    IGNORED = "ignored", _("ignored")


class ReconException(models.Model):
    """One difference a run found, typed. `expected` is ours, `actual` the statement's (minor units)."""

    run = models.ForeignKey(ReconRun, verbose_name=_("run"), on_delete=models.PROTECT, related_name="exceptions")
    kind = models.CharField(_("kind"), max_length=20, choices=ReconKind.choices)
    line_kind = models.CharField(_("line"), max_length=8, blank=True)  # payment / refund / payout / other
    our_ref = models.CharField(_("our number"), max_length=64, blank=True)
    provider_ref = models.CharField(_("provider's number"), max_length=64, blank=True)
    expected_minor = models.BigIntegerField(_("ours (minor units)"), null=True, blank=True)
    actual_minor = models.BigIntegerField(_("statement's (minor units)"), null=True, blank=True)
    currency = models.CharField(_("currency"), max_length=3, blank=True)
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    status = models.CharField(
        _("status"), max_length=8, choices=ReconExceptionStatus.choices, default=ReconExceptionStatus.OPEN
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("reconciliation exception")
        verbose_name_plural = _("reconciliation exceptions")
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "kind", "line_kind", "our_ref", "provider_ref"], name="settlement_reconexception_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.our_ref or self.provider_ref}"
