"""What other apps send to and get from settlement: frozen dataclasses, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Generic, TypeVar

from core.errors import DomainError
from core.money import Money


class SettlementError(DomainError):
    """A posting settlement refuses (the code says why: fee_plan_missing, idempotency_conflict, ...)."""


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """Rows of a list read newest first by keyset (after or before a row's id), so a page costs the same wherever
    it is and rows inserted meanwhile neither repeat nor are skipped."""

    items: tuple[T, ...]
    has_newer: bool
    has_older: bool


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
class MerchantMoneyView:
    """MerchantBalances plus what is on its way to the merchant's payee (payouts held and not final yet)."""

    balances: MerchantBalances
    in_transit_minor: int


@dataclass(frozen=True)
class StatementLineView:
    """One line of a merchant's statement: a movement on one of its accounts. `amount_minor` is in the merchant's
    favour when positive (money credited to it, or what it owes going down), against it when negative."""

    line_id: int
    transaction_id: int
    created_at: datetime
    transaction_kind: str
    reference: str
    account_kind: str
    amount_minor: int
    currency: str
    memo: str


@dataclass(frozen=True)
class PayoutView:
    """One payout as its party may see it: the payee masked, the provider's details left out."""

    payout_id: int  # the row's, for keyset pages
    payout_no: str
    party_kind: str
    party_id: int
    state: str
    amount_minor: int
    currency: str
    channel_account_id: int
    payee_masked: str
    failure_reason: str
    retry_of: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class ReconRunView:
    run_id: int
    channel_account_id: int
    day: date
    state: str  # running / done / failed
    lines_seen: int
    matched: int
    exception_count: int


@dataclass(frozen=True)
class BalanceCheck:
    """One channel account's balance check: the ledger's channel clearing balance (debit-normal: what the provider
    should hold for the shop) against what the provider says it holds (available plus pending). The provider's
    figures are None, and `error_code` / `error` say why, when it could not be asked. `payouts_in_transit` is what
    our payouts through the account have sent and not seen final yet (submitted, unknown): a provider may already
    have taken it while the ledger still counts it."""

    channel_account_id: int
    currency: str
    ledger: Money
    payouts_in_transit: Money
    provider_available: Money | None = None
    provider_pending: Money | None = None
    as_of: datetime | None = None
    error_code: str = ""
    error: str = ""
    explanation: str = ""  # for operators: what the difference may be (settlement.balance_check)

    @property
    def provider(self) -> Money | None:
        """Everything the provider holds for the account: available plus pending (None when not asked)."""
        if self.provider_available is None:
            return None
        return self.provider_available + (self.provider_pending or Money(0, self.currency))

    @property
    def difference(self) -> Money | None:
        """The provider's figure less the ledger's: positive when the provider holds more than the ledger says."""
        provider = self.provider
        return None if provider is None else provider - self.ledger

    @property
    def matches(self) -> bool:
        difference = self.difference
        return difference is not None and difference.amount_minor == 0
