"""The ChannelAdapter protocol every provider implements, its value types and its typed errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol

from core.money import Money


class Capability(StrEnum):
    QR = "qr"
    REDIRECT = "redirect"
    CARD_FORM = "card_form"
    QUERY = "query"
    CLOSE = "close"
    REFUND = "refund"
    IDEMPOTENT_CREATE = "idempotent_create"
    STATEMENT = "statement"


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


@dataclass(frozen=True)
class CreateOrder:
    out_trade_no: str
    amount: Money
    subject: str
    notify_url: str
    return_url: str
    client_ip: str
    method: str


@dataclass(frozen=True)
class Created:
    provider_trade_no: str
    pay_url: str
    qr_content: str


@dataclass(frozen=True)
class Observation:
    """One verified statement by the provider about one payment (from a notify or a query)."""

    out_trade_no: str
    provider_trade_no: str
    status: ObservedStatus
    amount: Money
    event_key: str
    provider_status: str


class ChannelAdapter(Protocol):
    code: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]

    def __init__(self, account: AccountConfig) -> None: ...

    @staticmethod
    def notification_reference(inbound: Inbound) -> str:
        """Our out_trade_no named by an (unverified) callback, to find the account that must verify it."""
        ...

    def create(self, order: CreateOrder) -> Created: ...

    def verify_notification(self, inbound: Inbound) -> Observation: ...

    def query(self, out_trade_no: str) -> Observation | None: ...

    @staticmethod
    def ack(ok: bool) -> Ack: ...
