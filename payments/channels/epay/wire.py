"""epay wire shapes: parameter names, the money string, provider status table."""

from __future__ import annotations

from payments.channels.base import ObservedStatus, RefundState

SUPPORTED_CURRENCY = "CNY"
SUCCESS_STATUS = "TRADE_SUCCESS"

# Notify `trade_status` -> our status. Anything not listed is refused, never guessed.
NOTIFY_STATUS: dict[str, ObservedStatus] = {SUCCESS_STATUS: ObservedStatus.SUCCEEDED}

# Query `status` field (api.php?act=order) -> our status.
# 2 = paid, then refunded: the payment itself did succeed (the refund is tracked on its own).
QUERY_STATUS: dict[str, ObservedStatus] = {
    "1": ObservedStatus.SUCCEEDED,
    "2": ObservedStatus.SUCCEEDED,
    "0": ObservedStatus.PENDING,
}

NOTIFY_REQUIRED = ("pid", "trade_no", "out_trade_no", "type", "money", "trade_status", "sign")

# The type values the panels accept for the cashier.
PAY_TYPES = ("alipay", "wxpay", "qqpay")

# api.php?act=refund / refundquery: 1 done, 0 processing, -1 refused.
REFUND_STATUS = {"1": RefundState.SUCCEEDED, "0": RefundState.PENDING, "-1": RefundState.FAILED}
