"""What cardshop hands risk and gets back: frozen dataclasses, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.money import Money


class Decision(StrEnum):
    """Least severe first: combining decisions takes the most severe (risk.services)."""

    ALLOW = "allow"
    CHALLENGE = "challenge"
    REVIEW = "review"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return list(Decision).index(self)


@dataclass(frozen=True)
class RiskRequest:
    """One checkout (or payment start) as risk sees it. The stock figures and the buyer's history come from the
    caller, who owns orders and stock; risk keeps only its own counters and lists."""

    stage: str  # "checkout" | "payment"
    amount: Money
    quantity: int
    email: str
    ip: str
    device: str = ""
    product_ref: str = ""
    merchant_id: int | None = None
    product_stock: int = 0  # codes of the product not sold: free plus held by unpaid orders
    product_pending: int = 0  # codes of the product held by unpaid orders now
    usual_amount_minor: int | None = None  # the product's usual order amount, None when it has no history
    buyer_paid_before: bool = False
    order_no: str = ""


@dataclass(frozen=True)
class RiskOutcome:
    decision: Decision
    reasons: tuple[str, ...]
    assessment_id: int
    score: float | None = None
    degraded: bool = False  # the counters could not be read: decided by the operator's fallback setting
