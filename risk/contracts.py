"""What cardshop hands risk and gets back: frozen dataclasses, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from django.utils.translation import gettext_lazy as _

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


# The words of risk.models.Action, for pages outside risk.
DECISION_LABELS = {
    Decision.ALLOW: _("allow"),
    Decision.CHALLENGE: _("challenge"),
    Decision.REVIEW: _("review"),
    Decision.BLOCK: _("block"),
}


@dataclass(frozen=True)
class ShopFacts:
    """What only the shop knows of one checkout, read while risk's counters are on their way
    (risk_assess(facts=...)); they replace the RiskRequest's fields of the same names."""

    product_stock: int = 0
    product_pending: int = 0
    usual_amount_minor: int | None = None
    buyer_paid_before: bool = False


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


# The words of risk.models.Stage.
STAGE_LABELS = {"checkout": _("checkout"), "payment": _("payment start")}


@dataclass(frozen=True)
class AssessmentView:
    """One stored assessment as the order pages show it. `features` are (name, value as shown) pairs, amounts
    already in major units with their currency; empty when the caller did not ask for them."""

    assessment_id: int
    stage: str  # "checkout" | "payment"
    order_no: str
    decision: Decision
    reasons: tuple[str, ...]
    score: float | None
    ruleset_version: int | None
    model_version: str
    degraded: bool
    created_at: datetime
    features: tuple[tuple[str, str], ...] = ()

    @property
    def decision_label(self) -> str:
        return str(DECISION_LABELS[self.decision])

    @property
    def stage_label(self) -> str:
        return str(STAGE_LABELS.get(self.stage, self.stage))

    @property
    def score_label(self) -> str:
        return "—" if self.score is None else f"{self.score:.2f}"


@dataclass(frozen=True)
class DecisionCount:
    """How many assessments decided `decision` in the hour starting at `hour` (aware, in the asked zone)."""

    hour: datetime
    decision: Decision
    assessments: int
