"""What other apps send to and get from settlement: frozen dataclasses, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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
