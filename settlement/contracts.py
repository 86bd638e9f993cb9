"""What other apps send to and get from settlement: frozen dataclasses, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from core.errors import DomainError


class SettlementError(DomainError):
    """A posting settlement refuses (the code says why: fee_plan_missing, idempotency_conflict, ...)."""


@dataclass(frozen=True)
class PostingLineView:
    """One line: debit positive, credit negative, in minor units."""

    party_kind: str
    party_id: int
    account_kind: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class PostingView:
    transaction_id: int
    key: str
    kind: str
    reference: str
    created_at: datetime
    lines: tuple[PostingLineView, ...]
    replayed: bool  # True when the key was already posted and nothing new was written


@dataclass(frozen=True)
class AdjustmentLine:
    """One line of an operator's adjustment: the account by party and kind, debit positive, credit negative."""

    party_kind: str
    party_id: int
    account_kind: str
    amount_minor: int


@dataclass(frozen=True)
class MerchantBalances:
    """A merchant's money in one currency, each on its normal side: pending (waiting for its cycle), available
    (what a payout may spend), reserve (held back), owed (refunds its available could not cover; netted against
    the next money that reaches available)."""

    merchant_id: int
    currency: str
    pending_minor: int
    available_minor: int
    reserve_minor: int
    owed_minor: int


@dataclass(frozen=True)
class ReconRunView:
    run_id: int
    channel_account_id: int
    day: date
    state: str  # running / done / failed
    lines_seen: int
    matched: int
    exception_count: int
