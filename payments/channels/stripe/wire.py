"""Stripe wire shapes: currency case, metadata keys, idempotency keys, the search query, status tables."""

from __future__ import annotations

from payments.channels.base import ObservedStatus, RefundState

# Our numbers travel in metadata: Stripe has no merchant order number field.
META_OUT_TRADE_NO = "out_trade_no"
META_REFUND_NO = "refund_no"
META_REASON = "reason"

# Stripe's own window (stripe.Webhook.DEFAULT_TOLERANCE); only old timestamps are refused, like the SDK does.
SIGNATURE_TOLERANCE_SECONDS = 300

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


def currency_out(currency: str) -> str:
    """Stripe takes and returns ISO codes lower-case."""
    return currency.lower()


def currency_in(currency: str) -> str:
    return currency.upper()


def create_idempotency_key(out_trade_no: str) -> str:
    return f"create-{out_trade_no}"


def refund_idempotency_key(refund_no: str) -> str:
    return f"refund-{refund_no}"


def confirm_url(base_url: str, intent_id: str) -> str:
    """Where the card form posts (Stripe.js confirms the same way, with the publishable key)."""
    return f"{base_url.rstrip('/')}/v1/payment_intents/{intent_id}/confirm"


def search_query(out_trade_no: str) -> str:
    """Stripe search-language query for one out_trade_no; quotes and backslashes are escaped."""
    escaped = out_trade_no.replace("\\", "\\\\").replace("'", "\\'")
    return f"metadata['{META_OUT_TRADE_NO}']:'{escaped}'"
