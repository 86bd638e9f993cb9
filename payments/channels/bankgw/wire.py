"""Bank gateway wire shapes: WSDL names, result codes, status tables, SOAP fault classes, notify fields.

Every provider word the adapter acts on is listed here; anything not listed is treated as not understood
(Unknown for calls, NotificationInvalid for callbacks), never guessed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo

from payments.channels.base import (
    ChannelError,
    ObservedStatus,
    PayoutState,
    RefundState,
    StatementKind,
    Terminal,
    Unknown,
)

WSDL_PATH = Path(__file__).with_name("bank.wsdl")
NAMESPACE = "urn:cardshop:bankgw"
BINDING = f"{{{NAMESPACE}}}BankBinding"
SOAP_PATH = "/soap"  # appended to account.base_url; the WSDL's soap:address is never used

# resultCode words (every operation).
ACCEPTED = "ACCEPTED"
REVIEW = "REVIEW"
DECLINED = "DECLINED"
NOT_FOUND = "NOT_FOUND"
SYSTEM_ERROR = "SYSTEM_ERROR"
NOT_READY = "NOT_READY"  # Statement only: the day is not closed yet


class CreateOutcome(StrEnum):
    CREATED = "created"
    TERMINAL = "terminal"
    UNKNOWN = "unknown"


# CreatePayment resultCode -> what the shop does. REVIEW: the bank recorded the payment but holds it for its
# own review; the buyer may still be shown the cashier, and QueryPayment / the notify resolve it (PENDING until
# then). SYSTEM_ERROR: the bank may have recorded it, so resubmitting could charge twice: resolve by query.
# Unlisted codes are UNKNOWN for the same reason.
CREATE_RESULT: dict[str, CreateOutcome] = {
    ACCEPTED: CreateOutcome.CREATED,
    REVIEW: CreateOutcome.CREATED,
    DECLINED: CreateOutcome.TERMINAL,
    SYSTEM_ERROR: CreateOutcome.UNKNOWN,
}

# Payment `status` (QueryPayment answer and callback) -> our status. A signed CLOSED/DECLINED callback is a true
# statement and is acknowledged; the payment's state machine keeps it from undoing a success.
PAYMENT_STATUS: dict[str, ObservedStatus] = {
    "PAID": ObservedStatus.SUCCEEDED,
    "SETTLED": ObservedStatus.SUCCEEDED,
    "PENDING": ObservedStatus.PENDING,
    "REVIEW": ObservedStatus.PENDING,
    # The buyer's last attempt was refused; the payment stays payable (a retry with another card reports PAID).
    "DECLINED": ObservedStatus.FAILED,
    "CLOSED": ObservedStatus.CLOSED,
    "EXPIRED": ObservedStatus.CLOSED,
}

# refundStatus (Refund / QueryRefund answers) -> our refund state.
REFUND_STATUS: dict[str, RefundState] = {
    "SUCCESS": RefundState.SUCCEEDED,
    "PENDING": RefundState.PENDING,
    "FAILED": RefundState.FAILED,
}

# Transfer `status` (Transfer / TransferQuery answers) -> our payout state. ACCEPTED and PROCESSING are the
# bank's steps before the payee is credited; REJECTED is final and comes with a rejectReason.
TRANSFER_STATUS: dict[str, PayoutState] = {
    "SETTLED": PayoutState.SUCCEEDED,
    "ACCEPTED": PayoutState.PENDING,
    "PROCESSING": PayoutState.PENDING,
    "REJECTED": PayoutState.FAILED,
}
TRANSFER_REJECTED = "REJECTED"
# rejectReason words the bank documents; another short code is passed on as the bank wrote it.
TRANSFER_REJECT_REASONS = frozenset({"INSUFFICIENT_FUNDS", "ACCOUNT_CLOSED", "NAME_MISMATCH"})
TRANSFER_REMARK_MAX = 120

# ---- Statement ------------------------------------------------------------
# The bank's day is China's (Asia/Shanghai, +08:00 all year): a statement lists what was booked from 00:00 to
# 24:00 Beijing time, whatever UTC day that is.
STATEMENT_ZONE = ZoneInfo("Asia/Shanghai")
STATEMENT_PAGE_SIZE = 1000  # the bank's maximum: the fewest round trips, one page held at a time
# entryType -> our kind. FEE is a fee billed apart from any trade.
STATEMENT_KIND: dict[str, StatementKind] = {
    "PAYMENT": StatementKind.PAYMENT,
    "REFUND": StatementKind.REFUND,
    "TRANSFER": StatementKind.PAYOUT,
    "FEE": StatementKind.OTHER,
}
# entryType -> (sign of amountMinor, sign of feeMinor) as the bank books them (bank.wsdl): a value of the other
# sign is a statement we do not understand. Multiplying by the sign gives the positive amount of the line.
STATEMENT_SIGNS: dict[str, tuple[int, int]] = {
    "PAYMENT": (1, 1),
    "REFUND": (-1, -1),  # money given back, and the share of the fee the bank gives back with it
    "TRANSFER": (-1, 1),
    "FEE": (-1, 1),  # the entry's amount is the fee; feeMinor is 0
}
# What makes a Statement call fail before any line is trusted, yet is safe to ask again: a download changes
# nothing at the bank, so a timeout or a failing bank is "try later", not an outcome to resolve.
STATEMENT_RETRY_CODES = frozenset({"timeout", "connection_lost", "http_5xx", "soap_fault", "system_error"})

# refundStatus in a refund callback: only final words are applied.
REFUND_NOTIFY_STATUS: dict[str, RefundState] = {
    "SUCCESS": RefundState.SUCCEEDED,
    "FAILED": RefundState.FAILED,
}

# SOAP 1.1 faultcode (local part before any ".subcode") -> the error the adapter raises. Client faults mean
# the bank refused the request as sent (auth, schema); Server faults mean it failed while working on it.
FAULT_ERROR: dict[str, type[ChannelError]] = {
    "Client": Terminal,
    "VersionMismatch": Terminal,
    "MustUnderstand": Terminal,
    "Server": Unknown,
}

NOTIFY_REQUIRED = (
    "merchantId",
    "orderId",
    "bankRef",
    "amountMinor",
    "currency",
    "status",
    "timestamp",
    "nonce",
    "signature",
)
REFUND_NOTIFY_REQUIRED = (
    "merchantId",
    "orderId",
    "refundId",
    "refundRef",
    "amountMinor",
    "currency",
    "refundStatus",
    "timestamp",
    "nonce",
    "signature",
)
NOTIFY_WINDOW_SECONDS = 300

# Matched whole and ASCII-only: `$` lets "990\n" through and `\d` takes "٩٩٠", which int() then reads.
_MINOR_RE = re.compile(r"0|[1-9][0-9]{0,17}")
_UNIX_SECONDS_RE = re.compile(r"[0-9]{1,12}")


def fault_error(faultcode: str | None) -> type[ChannelError]:
    """`soap:Client.Authentication` -> Terminal; unlisted or missing codes -> Unknown."""
    local = (faultcode or "").rpartition(":")[2].partition(".")[0]
    return FAULT_ERROR.get(local, Unknown)


def parse_minor(text: str) -> int:
    """A callback's amountMinor: plain non-negative digits only (no sign, no decimals, no spaces)."""
    if not isinstance(text, str) or not _MINOR_RE.fullmatch(text):
        raise ValueError(f"not an amount in minor units: {str(text)[:24]!r}")
    return int(text)


def parse_timestamp(text: str) -> int:
    """A callback's timestamp: unix seconds as plain ASCII digits (int() would also take " +12", "１２")."""
    if not isinstance(text, str) or not _UNIX_SECONDS_RE.fullmatch(text):
        raise ValueError(f"not unix seconds: {str(text)[:24]!r}")
    return int(text)


def expires_at(at: datetime) -> str:
    """CreatePayment's expiresAt: an xs:dateTime in UTC ("2026-12-02T10:00:00Z"). Seconds are cut, never
    rounded up: the bank must stop taking the payment no later than we stop waiting for it."""
    if at.tzinfo is None:
        raise Terminal("expires_at must carry a time zone", code="bad_expiry")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def statement_booked_at(text: object) -> datetime:
    """An entry's bookedAt: an ISO 8601 date-time that carries its offset ("2026-12-01T10:00:00+08:00")."""
    if not isinstance(text, str):
        raise ValueError("bookedAt missing")
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(f"bookedAt without a time zone: {text[:32]!r}")
    return at
