"""What other apps send to and get from payments: frozen dataclasses, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from django.db import models
from django.utils.translation import gettext_lazy as _

from core.errors import DomainError
from core.money import Money


class PaymentStatus(models.TextChoices):
    CREATED = "created", _("created")
    PENDING = "pending", _("pending")
    UNKNOWN = "unknown", _("unknown")
    SUCCEEDED = "succeeded", _("succeeded")
    FAILED = "failed", _("failed")
    CLOSED = "closed", _("closed")
    REFUNDING = "refunding", _("refunding")
    REFUNDED = "refunded", _("refunded")


class RefundStatus(models.TextChoices):
    REQUESTED = "requested", _("requested")  # our intent, committed before the provider is called
    PENDING = "pending", _("pending")  # the provider accepted it and is processing
    UNKNOWN = "unknown", _("unknown")  # the request may or may not have reached the provider
    SUCCEEDED = "succeeded", _("succeeded")
    FAILED = "failed", _("failed")


class SplitStatus(models.TextChoices):
    CREATED = "created", _("created")  # our intent, written with the sale; not sent yet
    SUBMITTED = "submitted", _("submitted")  # the provider accepted it and is splitting
    UNKNOWN = "unknown", _("unknown")  # the answer was lost: resolved by query, never sent under another number
    SUCCEEDED = "succeeded", _("succeeded")
    FAILED = "failed", _("failed")  # refused: nothing moved, an operator may split it again
    CANCELLED = "cancelled", _("cancelled")  # refunded before it was sent


# What operators read for a refund's status: "pending" alone reads like an unpaid order on the same page.
REFUND_STATUS_LABELS = {
    RefundStatus.REQUESTED: _("refund requested"),
    RefundStatus.PENDING: _("refund pending at the provider"),
    RefundStatus.UNKNOWN: _("refund outcome unknown"),
    RefundStatus.SUCCEEDED: _("refunded"),
    RefundStatus.FAILED: _("refund failed"),
}


@dataclass(frozen=True)
class PaymentRequest:
    """One payment to start. `channel_code` empty: routing picks among every account taking `method`.

    `notify_url` may hold `{channel}`: each try fills in the code of the channel it goes to.
    """

    reference: str
    amount: Money
    subject: str
    notify_url: str
    return_url: str
    client_ip: str
    channel_code: str = ""
    method: str = "alipay"
    merchant_id: int | None = None
    product_ref: str = ""
    expires_at: datetime | None = None  # the order's deadline: sent to providers that take an expiry
    # The merchant's plan says "split at the provider": only the merchant's own accounts take it (routing), and
    # the trade is created splittable (Alipay royalty_freeze, WeChat profit_sharing).
    split_at_provider: bool = False

    def notify_url_for(self, channel_code: str) -> str:
        return self.notify_url.replace("{channel}", channel_code)


@dataclass(frozen=True)
class PaymentView:
    out_trade_no: str
    reference: str
    channel_code: str
    status: PaymentStatus
    amount: Money
    pay_url: str
    qr_content: str
    error_code: str = ""  # the last thing the provider said against it (a decline, a timeout)
    method: str = ""  # the buyer-facing method it was made for
    # The provider's reason code for the buyer's last declined attempt ("" when none was declined); a timeout
    # or any other error that is not a decline never sets it.
    decline_code: str = ""


@dataclass(frozen=True)
class PaymentOption:
    """A payment method the buyer can choose on the pay page, and the channels that could take it."""

    method: str
    channel_codes: tuple[str, ...]


@dataclass(frozen=True)
class NotificationOutcome:
    """Result of applying a verified callback. `ack_*` is what the provider must be answered."""

    ack_status: int
    ack_body: str
    ack_content_type: str
    out_trade_no: str
    reference: str
    amount: Money
    newly_succeeded: bool
    duplicate: bool
    refund_no: str = ""  # set when the callback was about a refund
    refund_status: str = ""
    refund_newly_final: bool = False  # the refund just succeeded or failed: the order follows
    fee_facts: PaymentFeeFacts | None = None  # set when newly succeeded: what the ledger books for it
    newly_declined: bool = False  # the provider refused an attempt we had not heard of (risk counts these)


@dataclass(frozen=True)
class QueryOutcome:
    out_trade_no: str
    reference: str
    amount: Money
    newly_succeeded: bool
    status: str
    fee_facts: PaymentFeeFacts | None = None  # set when newly succeeded
    newly_declined: bool = False  # the provider refused an attempt we had not heard of (risk counts these)


@dataclass(frozen=True)
class RefundView:
    refund_no: str
    channel_code: str
    out_trade_no: str
    reference: str
    status: RefundStatus
    amount: Money
    newly_final: bool = False  # this call moved the refund to succeeded or failed
    reason: str = ""
    requested_by: str = ""
    # It takes all that was left of its payment (a whole refund, or the last of several): as of this call.
    whole: bool = True
    newly_requested: bool = False  # this call wrote it (a second click gets the one on its way)


class RefundRefused(DomainError):
    """The payment cannot be refunded (not paid, already refunded, channel without refunds)."""


class NotificationRejected(DomainError):
    """Unverifiable or inconsistent callback: answer 4xx and change nothing."""


class PaymentUnavailable(DomainError):
    """No channel could create the payment right now."""


@dataclass(frozen=True)
class ChannelAccountView:
    code: str
    name: str
    merchant_no: str
    base_url: str
    enabled: bool
    account_id: int = 0


@dataclass(frozen=True)
class ChannelOutcomes:
    """The payments one channel account was asked to make in a window, and how they stand now.

    `succeeded` counts every attempt whose money the provider took (also if refunded since); `open` the ones not
    decided yet (created, pending, unknown). `breaker_state` is a payments.breaker.BreakerState value, or ""
    when the breaker store could not be read.
    """

    account_id: int
    channel_code: str
    account_name: str
    enabled: bool
    breaker_state: str
    attempts: int
    succeeded: int
    failed: int
    closed: int
    open: int


@dataclass(frozen=True)
class MethodTotal:
    """Payments that collected money through one buyer-facing method in one currency, in a window."""

    method: str
    payments: int
    amount: Money


@dataclass(frozen=True)
class OpenRefunds:
    """Refunds not final yet (requested, pending, unknown), oldest first, at most the limit asked; `total` is
    how many there are in all."""

    rows: tuple[RefundView, ...]
    total: int


@dataclass(frozen=True)
class PaymentFeeFacts:
    """What the ledger books for one collected payment: which channel account holds the money and what that
    channel keeps. `fee` is the account's rate at the moment of asking (settlement asks in the paid
    transaction), rounded half up like routing's estimate."""

    out_trade_no: str
    reference: str
    account_id: int
    channel_code: str
    amount: Money
    fee: Money
    refund_returns_fee: bool = True  # the channel gives its fee back when this payment is refunded
    # Set when the trade is on a merchant's own account: the platform account its share is split to.
    split_to_account_id: int | None = None

    @property
    def split_at_provider(self) -> bool:
        return self.split_to_account_id is not None


class PayoutResult(StrEnum):
    """What one attempt to pay out learned. Only PAID and FAILED are final; NOT_SENT means nothing reached the
    provider (send again, same number); UNKNOWN means it may have (query first, never a new number)."""

    PAID = "paid"
    FAILED = "failed"
    PENDING = "pending"
    UNKNOWN = "unknown"
    NOT_SENT = "not_sent"


@dataclass(frozen=True)
class PayoutOutcome:
    result: PayoutResult
    provider_payout_no: str = ""
    provider_status: str = ""
    failure_reason: str = ""


@dataclass(frozen=True)
class ExpectedLine:
    """What our records say a channel account's statement should hold: a payment that took money, or a final
    refund. `our_ref` is the number the provider knows (the payment's wire out_trade_no, the refund_no)."""

    kind: str  # "payment" | "refund"
    our_ref: str
    provider_ref: str
    amount: Money
    at: datetime  # when it succeeded
    out_trade_no: str  # the payment's (for a refund: the refunded payment's) own number


@dataclass(frozen=True)
class SplitView:
    """One provider split as the layers above see it. `newly_final` is set by the apply that made it final."""

    split_no: str
    out_trade_no: str
    reference: str
    status: SplitStatus
    amount: Money  # the platform's share
    merchant_account_id: int  # the merchant's own channel account the trade is on
    receiver_account_id: int  # the platform's account the share went to
    provider_split_no: str = ""
    failure_reason: str = ""
    newly_final: bool = False


class SplitRefused(DomainError):
    """A split cannot be asked for (the trade is not on a merchant's own account, not paid, already split)."""


class BalanceUnavailable(DomainError):
    """The provider could not say what a channel account holds: the channel has no balance API, the provider could
    not be reached or refused, or its answer did not verify. `code` is stable (balance_unsupported, or the
    adapter's own code: connect, http_5xx, bad_signature, ...); `retryable` says whether asking later may help."""

    def __init__(self, code: str, message: str, *, retryable: bool = False):
        super().__init__(code, message)
        self.retryable = retryable


@dataclass(frozen=True)
class ChannelAccountBalance:
    """What the provider says one channel account holds (payments.facade.channel_balance), in the account's
    currency: `available` may be spent now, `pending` is held by the provider and not released yet (None when
    the provider reports no such figure)."""

    channel_account_id: int
    channel_code: str
    available: Money
    pending: Money | None = None
    as_of: datetime | None = None  # the provider's time of the figures, when it gives one
    provider_status: str = ""

    @property
    def held(self) -> Money:
        """Everything the provider holds for the account: available plus pending."""
        return self.available if self.pending is None else self.available + self.pending
