"""Alipay open-platform wire shapes: method names, result codes, the money string, provider status tables."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from payments.channels.base import ObservedStatus, RefundState, Terminal

# Alipay's domestic acquiring settles CNY only and sends no currency field: amounts are yuan strings ("9.90").
SUPPORTED_CURRENCY = "CNY"

# Alipay reads wall-clock times in Beijing time.
TIME_ZONE = ZoneInfo("Asia/Shanghai")

PRECREATE = "alipay.trade.precreate"
PAGE_PAY_PRODUCT = "FAST_INSTANT_TRADE_PAY"

# Gateway result codes. 10000 is the only success; 40004 is a signed business refusal whose sub_code says why.
CODE_SUCCESS = "10000"
CODE_BUSINESS_FAILED = "40004"
# 20000 "service unavailable": Alipay says the outcome is unknown and the call may be retried or queried.
CODES_UNKNOWN = frozenset({"20000"})

# Business sub_codes with a meaning of their own; any other 40004 is an explicit refusal.
SUB_SYSTEM_ERROR = "ACQ.SYSTEM_ERROR"  # Alipay's "retry the same request": the outcome is not known
SUB_TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
SUB_TRADE_STATUS_ERROR = "ACQ.TRADE_STATUS_ERROR"  # close of a paid (or already closed) trade

# Async notify / alipay.trade.query `trade_status` -> our status. Anything not listed is refused, never guessed.
# TRADE_SUCCESS (paid, refundable) and TRADE_FINISHED (paid, final) are two distinct events about one payment.
TRADE_STATUS: dict[str, ObservedStatus] = {
    "WAIT_BUYER_PAY": ObservedStatus.PENDING,
    "TRADE_SUCCESS": ObservedStatus.SUCCEEDED,
    "TRADE_FINISHED": ObservedStatus.SUCCEEDED,
    "TRADE_CLOSED": ObservedStatus.CLOSED,
}

# alipay.trade.fastpay.refund.query `refund_status`. Alipay only ever states success; a known request
# without it is still in progress (or failed and will be retried with the same out_request_no).
REFUND_STATUS: dict[str, RefundState] = {"REFUND_SUCCESS": RefundState.SUCCEEDED}

# alipay.trade.refund `fund_change`: "Y" only on the call that moved money; a replayed out_request_no says "N".
FUND_CHANGED = "Y"

NOTIFY_REQUIRED = ("app_id", "trade_no", "out_trade_no", "trade_status", "total_amount", "sign")
# A trade notify carrying these is about a refund (out_biz_no is our refund number).
REFUND_NOTIFY_REQUIRED = ("out_biz_no", "refund_fee")

# Never part of the notify's signed content (the SDK's verify() drops sign_type; we drop sign).
NOTIFY_UNSIGNED = ("sign", "sign_type")
SIGN_TYPE = "RSA2"


def time_expire(at: datetime) -> str:
    """The trade's absolute deadline (`time_expire`, "yyyy-MM-dd HH:mm:ss" Beijing time). Seconds are cut, never
    rounded up: Alipay must stop taking the payment no later than we stop waiting for it."""
    if at.tzinfo is None:
        raise Terminal("expires_at must carry a time zone", code="bad_expiry")
    return at.astimezone(TIME_ZONE).strftime("%Y-%m-%d %H:%M:%S")
