"""The ChannelAdapter protocol every provider implements, its value types and its typed errors."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import ClassVar, Protocol

from core.money import Money


class Capability(StrEnum):
    """What the services ask of an adapter beyond create and notify, each checked where it is used."""

    QUERY = "query"  # payment_query: the janitor asks the provider
    CLOSE = "close"  # expiry, cancel and a create in doubt close the trade at the provider
    REFUND = "refund"  # refund_request refuses a channel that cannot refund
    PARTIAL_REFUND = "partial_refund"  # part of a payment, several times up to its amount (epay's forks: whole)
    PAYOUT = "payout"  # settlement pays merchants and agents out through it (payout + payout_query)
    STATEMENT = "statement"  # reconciliation downloads the account's daily statement (statement)
    SPLIT = "split"  # the provider splits a paid trade among receivers itself (split_bind, split, split_return)
    BALANCE = "balance"  # the balance check asks what the provider says the account holds (balance)


class ObservedStatus(StrEnum):
    """What a provider said about a payment, already mapped by the adapter's explicit table."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"


class ChannelError(Exception):
    """Base of adapter errors; `code` is stable, the message is for operators."""

    def __init__(self, message: str, *, code: str = "channel_error"):
        super().__init__(message)
        self.code = code


class Retryable(ChannelError):
    """Nothing happened at the provider (refused connection, explicit busy): safe to try again or elsewhere."""


class Terminal(ChannelError):
    """The provider refused for good (bad parameters, closed account)."""


class Unknown(ChannelError):
    """The outcome cannot be known (timeout, 5xx after sending): resolve by query, never by resubmitting."""


class NotificationInvalid(Exception):
    """A callback that must not be applied; `code` and message go back to the sender as a 4xx."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Inbound:
    """A provider callback as received: single-valued query/form parameters, the raw body (signatures over
    bodies need the exact bytes) and the headers, lower-cased (WeChat and Stripe sign through headers)."""

    params: Mapping[str, str]
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ack:
    """What the provider must be answered for a callback we applied (or refused)."""

    status: int
    body: str
    content_type: str = "text/plain"


@dataclass(frozen=True)
class AccountConfig:
    """A channel account as an adapter sees it: decrypted credentials, never an ORM object."""

    account_id: int
    code: str
    merchant_no: str
    base_url: str
    currency: str
    credentials: Mapping[str, str] = field(repr=False)
    # (connect, read) seconds for every provider call. A connect failure is Retryable (nothing was sent);
    # a read timeout is Unknown (the provider may have acted).
    timeouts: tuple[float, float] = (2.0, 8.0)


@dataclass(frozen=True)
class CreateOrder:
    out_trade_no: str
    amount: Money
    subject: str
    notify_url: str
    return_url: str
    client_ip: str
    method: str
    # When the buyer's reservation ends: channels whose protocol takes an expiry send it, so the provider
    # itself refuses payment after it (Alipay/WeChat `time_expire`, the bank's `expiresAt`, Stripe's session).
    expires_at: datetime | None = None
    # The provider will split this trade itself (capability SPLIT): Alipay freezes it for royalty
    # (extend_params.royalty_freeze), WeChat marks it for profit sharing (settle_info.profit_sharing).
    split: bool = False


@dataclass(frozen=True)
class Created:
    """What the pay page needs: a QR payload, a URL to send the buyer to, and/or a card-form secret."""

    provider_trade_no: str
    pay_url: str = ""
    qr_content: str = ""


@dataclass(frozen=True)
class Observation:
    """One verified statement by the provider about one payment (from a notify or a query)."""

    out_trade_no: str
    provider_trade_no: str
    status: ObservedStatus
    amount: Money
    event_key: str
    provider_status: str
    # Set on a decline (a FAILED the buyer's card or bank caused) only: the provider's own reason code, e.g.
    # Stripe's `insufficient_funds`; the provider's decline word (PAYERROR, DECLINED) when it gives no reason.
    # A timeout or an unreadable answer is never a decline and never lands here.
    decline_code: str = ""


# What a decline code may look like: a provider's short machine word. Free text is not a code.
_DECLINE_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def decline_code_or_empty(value: object) -> str:
    """The provider's decline reason if it is a short machine code (at most 64 characters), else ""."""
    return value if isinstance(value, str) and _DECLINE_CODE_RE.fullmatch(value) else ""


class RefundState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class RefundRequest:
    """One refund. `refund_no` is our idempotency key: sending the same request twice refunds once."""

    refund_no: str
    out_trade_no: str
    provider_trade_no: str
    amount: Money  # what to give back
    total: Money  # what the payment collected (WeChat and others require it)
    reason: str
    notify_url: str
    provider_refund_no: str = ""  # known once the provider answered; lets a query name it directly
    # Shares the provider split off this trade, taken back as part of this refund (a trade on a merchant's own
    # account whose platform share was split): Alipay funds the refund from the receiver
    # (refund_royalty_parameters), WeChat Pay returns it first (/v3/profitsharing/return-orders).
    split_returns: tuple[SplitToReturn, ...] = ()


@dataclass(frozen=True)
class RefundObservation:
    """One verified statement by the provider about one refund (response, query or callback)."""

    refund_no: str
    provider_refund_no: str
    status: RefundState
    amount: Money
    provider_status: str
    event_key: str = ""


class PayoutState(StrEnum):
    PENDING = "pending"  # accepted, not final yet (the provider's processing states)
    SUCCEEDED = "succeeded"  # the money reached the payee
    FAILED = "failed"  # final refusal: nothing left our balance (or it came back)


@dataclass(frozen=True)
class PayoutRequest:
    """One transfer from the platform's balance at the provider to a payee. `payout_no` is our idempotency key
    (Alipay out_biz_no, WeChat out_bill_no, Stripe's Idempotency-Key and transfer_group, the bank's transfer
    reference): sending the same request twice pays once."""

    payout_no: str
    amount: Money
    payee: str  # the provider's id of the payee: Alipay login or user id, WeChat openid, Stripe acct_, bank account
    payee_name: str  # the real name the provider checks (Alipay, WeChat above its threshold, the bank)
    remark: str
    provider_payout_no: str = ""  # known once the provider answered; lets a query name it directly


@dataclass(frozen=True)
class PayoutObservation:
    """One verified statement by the provider about one payout (response or query)."""

    payout_no: str
    provider_payout_no: str
    status: PayoutState
    amount: Money
    provider_status: str  # the provider's own word (SUCCESS, WAIT_USER_CONFIRM, paid, ...), for operators
    failure_reason: str = ""  # the provider's reason when FAILED


class StatementKind(StrEnum):
    PAYMENT = "payment"  # money collected from a buyer
    REFUND = "refund"  # money given back to a buyer
    PAYOUT = "payout"  # money the platform transferred out (to a merchant or agent)
    OTHER = "other"  # anything else the provider books on the account (fees billed apart, adjustments)


@dataclass(frozen=True)
class StatementLine:
    """One normalised line of a provider's daily statement of one account. Amounts are positive; `fee` is what
    the provider kept on this line (a refund's fee is what it gave back, also positive)."""

    kind: StatementKind
    provider_ref: str  # the provider's id of the trade / refund / transfer (trade_no, transaction_id, ch_..., ...)
    our_ref: str  # our out_trade_no, refund_no or payout_no as the provider echoes it ("" when absent)
    amount: Money
    fee: Money
    status: str  # the provider's own word, for operators (TRADE_SUCCESS, SUCCESS, REFUND, available, ...)
    occurred_at: datetime
    trade_ref: str = ""  # for a refund: the provider's id of the refunded trade
    line_no: int = 0  # position in the file, so an exception points at the line


@dataclass(frozen=True)
class StatementTotals:
    """The statement's own control totals (its summary rows or header), to check the lines against."""

    count: int
    amount: Money  # payments minus everything paid out of the account (refunds, transfers, billed fees)
    fee: Money  # fees charged minus fees given back on refunds


@dataclass
class Statement:
    """A day's statement: `lines` is a one-pass iterator (the file is streamed, never held whole in memory);
    `totals` is filled when the provider's summary has been read (for some formats only at the end, so read
    it after the lines); None when the format has no control totals."""

    day: date
    lines: Iterator[StatementLine]
    totals: StatementTotals | None = None
    source_hash: str = ""  # sha256 of the raw file as downloaded, kept with the run


class SplitState(StrEnum):
    PENDING = "pending"  # accepted, being processed (asynchronous at both providers)
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class SplitReceiver:
    """One receiver of a split: the provider's id of its account, that id's type in the provider's words (Alipay
    userId / loginName, WeChat MERCHANT_ID / PERSONAL_OPENID), its real name, and its share."""

    account: str
    account_type: str
    name: str
    amount: Money
    description: str = ""


@dataclass(frozen=True)
class SplitRequest:
    """Split a paid trade. `split_no` is our idempotency key (Alipay out_request_no, WeChat out_order_no);
    `finish` releases what is left of the trade to the merchant (Alipay royalty_finish, WeChat unfreeze_unsplit)."""

    split_no: str
    out_trade_no: str
    provider_trade_no: str
    receivers: tuple[SplitReceiver, ...]
    finish: bool = True
    provider_split_no: str = ""


@dataclass(frozen=True)
class SplitResult:
    account: str
    amount: Money
    status: SplitState
    failure_reason: str = ""


@dataclass(frozen=True)
class SplitObservation:
    """What the provider says about one split (answer, query or callback): overall and per receiver."""

    split_no: str
    provider_split_no: str
    status: SplitState  # succeeded when every receiver did; failed when any failed for good; else pending
    receivers: tuple[SplitResult, ...]
    provider_status: str = ""


@dataclass(frozen=True)
class SplitReturnRequest:
    """Take a receiver's share back after the trade is refunded (Alipay refund_royalty_parameters or WeChat
    /v3/profitsharing/return-orders). `return_no` is our idempotency key."""

    return_no: str
    split_no: str
    provider_split_no: str
    out_trade_no: str
    provider_trade_no: str
    receiver: SplitReceiver  # whose share, and how much of it comes back


@dataclass(frozen=True)
class SplitToReturn:
    """One receiver's share of one split, to be taken back with a refund of the trade."""

    split_no: str
    provider_split_no: str
    receiver: SplitReceiver  # amount: what comes back


@dataclass(frozen=True)
class SplitReturnObservation:
    return_no: str
    provider_return_no: str
    status: SplitState
    amount: Money
    failure_reason: str = ""


@dataclass(frozen=True)
class ChannelBalance:
    """What the provider says one account holds, in the account's currency: `available` may be spent or paid out
    now; `pending` is money the provider holds for it but has not released yet (Stripe's pending, Alipay's
    freeze_amount, WeChat's pending_amount: trades frozen for splitting, charges not yet available); None when
    the provider reports no such figure. Either may be negative (a refund or fee beyond what was there)."""

    available: Money
    pending: Money | None = None
    as_of: datetime | None = None  # when the provider says the figures stand; None when it does not say
    provider_status: str = ""  # what was asked, in the provider's words (account type, API), for operators


# Buyer-facing payment methods. One method may be served by several channels (Alipay directly or through
# an epay aggregator), which is what routing chooses between.
METHODS = ("alipay", "wxpay", "card", "bank", "qqpay")

# The HTTP methods a channel's callbacks arrive by, when its adapter does not say: providers notify by POST.
DEFAULT_NOTIFY_METHODS: frozenset[str] = frozenset({"POST"})


def notify_methods_of(adapter: type[ChannelAdapter]) -> frozenset[str]:
    """The HTTP methods `adapter`'s provider sends callbacks by; any other method is refused unverified."""
    return getattr(adapter, "notify_methods", DEFAULT_NOTIFY_METHODS)


def notification_account_hint_of(adapter: type[ChannelAdapter], inbound: Inbound) -> str:
    """The key id an unverified callback says it is signed with, "" when the protocol names none (or the
    adapter does not read it)."""
    read = getattr(adapter, "notification_account_hint", None)
    return read(inbound) if read is not None else ""


class ChannelAdapter(Protocol):
    code: ClassVar[str]
    methods: ClassVar[frozenset[str]]
    capabilities: ClassVar[frozenset[Capability]]
    # HTTP methods of the provider's callbacks (read through notify_methods_of: DEFAULT_NOTIFY_METHODS if absent).
    notify_methods: ClassVar[frozenset[str]]

    def __init__(self, account: AccountConfig) -> None: ...

    @staticmethod
    def notification_account_hint(inbound: Inbound) -> str:
        """Optional (read through notification_account_hint_of). The key id the (unverified) callback names,
        e.g. WeChat's Wechatpay-Serial, so that only the accounts holding that key try to verify it."""
        ...

    def account_hint(self) -> str:
        """Optional, with notification_account_hint: the key id this account's callbacks name."""
        ...

    @staticmethod
    def notification_reference(inbound: Inbound) -> str:
        """Our out_trade_no named by an (unverified) callback, to find the account that must verify it.

        "" when the protocol hides it (WeChat encrypts the resource): the caller then tries the channel's
        enabled accounts and keeps the one whose keys verify.
        """
        ...

    def create(self, order: CreateOrder) -> Created:
        """Raises Retryable (nothing sent), Terminal (refused) or Unknown (timeout/5xx after sending)."""
        ...

    def verify_notification(self, inbound: Inbound) -> Observation | RefundObservation:
        """Verify signature, merchant/app id, timestamp window, decrypt; map the provider status by an
        explicit table. Raises NotificationInvalid for anything that must not be applied."""
        ...

    def query(self, out_trade_no: str, provider_trade_no: str = "") -> Observation | None:
        """None when the provider does not know the trade (yet). provider_trade_no is "" when the create
        answer never arrived (UNKNOWN): adapters must then find the trade by our out_trade_no."""
        ...

    def close(self, out_trade_no: str, provider_trade_no: str = "") -> None:
        """Close an unpaid trade (capability CLOSE). Raises Terminal when it is already paid."""
        ...

    def refund(self, request: RefundRequest) -> RefundObservation:
        """Submit a refund carrying request.refund_no as the provider's idempotency key (capability REFUND)."""
        ...

    def refund_query(self, request: RefundRequest) -> RefundObservation | None:
        """What the provider says about refund_no; None when it does not know it."""
        ...

    @staticmethod
    def ack(ok: bool) -> Ack: ...

    def payout(self, request: PayoutRequest) -> PayoutObservation:
        """Submit a transfer carrying request.payout_no as the provider's idempotency key (capability PAYOUT).
        Raises Retryable (nothing was sent), Terminal (refused for good: nothing moved) or Unknown (timeout, 5xx:
        resolve by payout_query, never by a new payout number)."""
        ...

    def payout_query(self, request: PayoutRequest) -> PayoutObservation | None:
        """What the provider says about request.payout_no; None when it does not know it (it was never received,
        and may be sent again under the same number)."""
        ...

    def split_bind(self, receiver: SplitReceiver) -> None:
        """Register a receiver with the provider before any split to it (Alipay royalty.relation.bind, WeChat
        profitsharing/receivers/add); idempotent (capability SPLIT)."""
        ...

    def split(self, request: SplitRequest) -> SplitObservation:
        """Ask the provider to split a paid trade (request.split_no is the idempotency key)."""
        ...

    def split_query(self, request: SplitRequest) -> SplitObservation | None:
        """What became of a split; None when the provider does not know split_no."""
        ...

    def split_return(self, request: SplitReturnRequest) -> SplitReturnObservation:
        """Take a receiver's share back (after a refund of the trade); return_no is the idempotency key."""
        ...

    def statement(self, day: date) -> Statement:
        """The account's statement for `day` (the provider's day), downloaded and parsed as it streams
        (capability STATEMENT). Raises Retryable when the provider has not produced it yet or cannot be reached,
        Terminal when it refuses, Unknown on a corrupt or tampered file (hash or signature wrong)."""
        ...

    def balance(self) -> ChannelBalance:
        """What the provider says the account holds (capability BALANCE); a read that moves nothing. Raises
        Retryable (unreachable, busy, a timeout or 5xx: ask again later) or Unknown when it cannot tell (an answer
        that does not verify or is not understood), Terminal when the provider refuses the request."""
        ...
