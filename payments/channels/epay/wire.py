"""epay wire shapes: parameter names, the money string, provider status table."""

from __future__ import annotations

from payments.channels.base import ObservedStatus

SUPPORTED_CURRENCY = "CNY"
SUCCESS_STATUS = "TRADE_SUCCESS"

# Notify `trade_status` -> our status. Anything not listed is refused, never guessed.
NOTIFY_STATUS: dict[str, ObservedStatus] = {SUCCESS_STATUS: ObservedStatus.SUCCEEDED}

# Query `status` field (api.php?act=order) -> our status.
QUERY_STATUS: dict[str, ObservedStatus] = {"1": ObservedStatus.SUCCEEDED, "0": ObservedStatus.PENDING}

NOTIFY_REQUIRED = ("pid", "trade_no", "out_trade_no", "type", "money", "trade_status", "sign")

# The type values the panels accept for the cashier.
PAY_TYPES = ("alipay", "wxpay", "qqpay")
