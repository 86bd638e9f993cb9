"""Stripe wire shapes: currency case, metadata keys, idempotency keys, the search query, status tables, the
Checkout Session's expiry window and the balance-transaction list that is the day's statement."""

from __future__ import annotations

import math
import re
from datetime import datetime

from payments.channels.base import ObservedStatus, RefundState, StatementKind

# Our numbers travel in metadata: Stripe has no merchant order number field.
META_OUT_TRADE_NO = "out_trade_no"
META_REFUND_NO = "refund_no"
META_REASON = "reason"

# Stripe's own window (stripe.Webhook.DEFAULT_TOLERANCE); only old timestamps are refused, like the SDK does.
SIGNATURE_TOLERANCE_SECONDS = 300

# Checkout's bounds for a session's expires_at, counted from its creation (Stripe refuses anything else).
SESSION_MIN_SECONDS = 30 * 60
SESSION_MAX_SECONDS = 24 * 60 * 60
# Margin for the clock difference and the request's travel: Stripe counts from when it creates the session.
SESSION_MARGIN_SECONDS = 60

# Webhook event type -> our status, for events whose data.object is a Checkout Session. `completed` is paid
# only with payment_status "paid" (delayed methods complete unpaid and follow with async_payment_*).
SESSION_EVENT_STATUS: dict[str, ObservedStatus] = {
    "checkout.session.completed": ObservedStatus.SUCCEEDED,
    "checkout.session.async_payment_succeeded": ObservedStatus.SUCCEEDED,
    "checkout.session.async_payment_failed": ObservedStatus.FAILED,
    "checkout.session.expired": ObservedStatus.CLOSED,
}

# Webhook event type -> our status, for events whose data.object is a PaymentIntent. Anything else is refused.
PAYMENT_EVENT_STATUS: dict[str, ObservedStatus] = {
    "payment_intent.succeeded": ObservedStatus.SUCCEEDED,
    "payment_intent.payment_failed": ObservedStatus.FAILED,
    "payment_intent.canceled": ObservedStatus.CLOSED,
    "payment_intent.processing": ObservedStatus.PENDING,
}

# Webhook event types that carry a refund (refund.* a Refund object, charge.refunded a Charge with its refunds).
REFUND_EVENT_TYPES = frozenset({"refund.created", "refund.updated", "charge.refunded"})

# PaymentIntent.status (query answers) -> our status. A declined card leaves the intent in
# requires_payment_method (the buyer may try another card), so a query never says FAILED.
INTENT_STATUS: dict[str, ObservedStatus] = {
    "requires_payment_method": ObservedStatus.PENDING,
    "requires_confirmation": ObservedStatus.PENDING,
    "requires_action": ObservedStatus.PENDING,
    "processing": ObservedStatus.PENDING,
    "requires_capture": ObservedStatus.PENDING,
    "succeeded": ObservedStatus.SUCCEEDED,
    "canceled": ObservedStatus.CLOSED,
}

# Checkout Session (status, payment_status) in a query answer -> our status.
SESSION_STATUS: dict[tuple[str, str], ObservedStatus] = {
    ("open", "unpaid"): ObservedStatus.PENDING,
    ("complete", "unpaid"): ObservedStatus.PENDING,  # a delayed method is still on its way
    ("complete", "paid"): ObservedStatus.SUCCEEDED,
    ("expired", "unpaid"): ObservedStatus.CLOSED,
}

# Refund.status -> our refund state.
REFUND_STATUS: dict[str, RefundState] = {
    "pending": RefundState.PENDING,
    "requires_action": RefundState.PENDING,
    "succeeded": RefundState.SUCCEEDED,
    "failed": RefundState.FAILED,
    "canceled": RefundState.FAILED,
}

# cancel on an intent that is not cancelable (already succeeded or canceled).
UNEXPECTED_STATE = "payment_intent_unexpected_state"
RESOURCE_MISSING = "resource_missing"


_WIRE_CURRENCY = re.compile(r"[a-z]{3}")


def currency_out(currency: str) -> str:
    """Stripe takes and returns ISO codes lower-case."""
    return currency.lower()


def currency_in(currency: str) -> str | None:
    """Our code for a currency in a Stripe answer or event; None unless it is three lower-case letters."""
    if not isinstance(currency, str) or not _WIRE_CURRENCY.fullmatch(currency):
        return None
    return currency.upper()


def session_expires_at(deadline: datetime | None, *, now: float) -> int | None:
    """The `expires_at` to send for an order payable until `deadline` (None: Stripe's default, 24 h).

    Stripe takes 30 min..24 h from the session's creation. Our orders usually lapse sooner (15 min), so the
    session is sent `deadline + 31 min`, a value fixed by the order alone: a retried create under the same
    Idempotency-Key sends the same parameters, as Stripe requires. It is at least 31 min ahead while the
    order is payable, and our own close at the deadline expires the session early
    (POST /v1/checkout/sessions/{id}/expire). A deadline past 24 h is cut to 24 h, rounded down to the
    minute (a later order close still applies).
    """
    if deadline is None:
        return None
    wanted = math.ceil(deadline.timestamp())
    floor = now + SESSION_MIN_SECONDS + SESSION_MARGIN_SECONDS
    if wanted < floor:
        wanted += SESSION_MIN_SECONDS + SESSION_MARGIN_SECONDS
    ceiling = int(now + SESSION_MAX_SECONDS - SESSION_MARGIN_SECONDS) // 60 * 60
    return min(wanted, ceiling)


def create_idempotency_key(out_trade_no: str) -> str:
    return f"create-{out_trade_no}"


def refund_idempotency_key(refund_no: str) -> str:
    return f"refund-{refund_no}"


def search_query(out_trade_no: str) -> str:
    """Stripe search-language query for one out_trade_no; quotes and backslashes are escaped."""
    escaped = out_trade_no.replace("\\", "\\\\").replace("'", "\\'")
    return f"metadata['{META_OUT_TRADE_NO}']:'{escaped}'"


# ---- payouts: Connect transfers from the platform balance to a connected account -------------------------------
META_PAYOUT_NO = "payout_no"
# A transfer is made whole or not at all (there is no pending state); one reversed in full gave the money back.
TRANSFER_PROVIDER_STATUS = "created"
TRANSFER_REVERSED_STATUS = "reversed"
# invalid_request_error codes that are a business refusal of this transfer, nothing moved: our balance cannot
# cover it, or the payee account cannot take it (its transfers capability is off). "No such destination" comes as
# resource_missing with param=destination (see PAYOUT_MISSING_PARAM). Any other invalid request is Terminal.
PAYOUT_FAILED_CODES = frozenset({"balance_insufficient", "account_invalid", "insufficient_capabilities_for_transfer"})
PAYOUT_MISSING_PARAM = "destination"
# Stripe's limits: a transfer_group is at most 255 characters, a description 1000 (metadata values 500).
DESCRIPTION_MAX = 1000


def payout_idempotency_key(payout_no: str) -> str:
    return f"payout-{payout_no}"


# ---- statement: the balance transactions created in one UTC day ------------------------------------------------
# GET /v1/balance_transactions?created[gte]=..&created[lt]=..&limit=100&expand[]=data.source, cursor-paged by
# starting_after=<last id> while has_more. Balance transactions carry no metadata of their own (Stripe copies none
# onto them), so the source object (charge / refund / transfer) comes expanded and its metadata names our number.
STATEMENT_PAGE_LIMIT = 100  # Stripe's maximum page size
STATEMENT_EXPAND = ["data.source"]
# BalanceTransaction.type -> kind; a type not listed falls back on reporting_category, then OTHER.
STATEMENT_TYPE_KIND: dict[str, StatementKind] = {
    "charge": StatementKind.PAYMENT,
    "payment": StatementKind.PAYMENT,
    "refund": StatementKind.REFUND,
    "payment_refund": StatementKind.REFUND,
    "transfer": StatementKind.PAYOUT,
}
STATEMENT_CATEGORY_KIND: dict[str, StatementKind] = {
    "charge": StatementKind.PAYMENT,
    "refund": StatementKind.REFUND,
    "transfer": StatementKind.PAYOUT,
}
# Which metadata key of the (expanded) source holds our number, per kind.
STATEMENT_OUR_REF_KEY: dict[StatementKind, str] = {
    StatementKind.PAYMENT: META_OUT_TRADE_NO,
    StatementKind.REFUND: META_REFUND_NO,
    StatementKind.PAYOUT: META_PAYOUT_NO,
}
# A money-in kind books a positive amount, a money-out kind a negative one (Stripe signs amount by direction).
STATEMENT_SIGN: dict[StatementKind, int] = {
    StatementKind.PAYMENT: 1,
    StatementKind.REFUND: -1,
    StatementKind.PAYOUT: -1,
}
