"""epay wire shapes: parameter names, the money string, provider status table."""

from __future__ import annotations

import re

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

# api.php?act=orders, the merchant's order list: the only statement these panels have. The panel answers at most
# 50 rows a page (`if($limit>50)$limit=50;`), newest trade_no first.
ORDERS_PAGE_MAX = 50
# addtime / endtime: "2026-11-20 15:02:00", the panel's local (Asia/Shanghai) time.
ORDERS_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
ORDERS_REQUIRED = ("trade_no", "out_trade_no", "pid", "money", "status", "addtime")
# The list's `status`: 0 unpaid, 1 paid, 2 refunded (whole), 3 frozen by the panel (paid, money held).
LIST_UNPAID = "0"
LIST_PAID = frozenset({"1", "2", "3"})
LIST_REFUNDED = "2"

# api.php?act=query&pid=&key=: the merchant's own record; `money` is its balance at the panel (yuan, a DECIMAL
# column written as a string; a refund after a settlement can take it below zero).
BALANCE_MONEY_RE = re.compile(r"(-?)([0-9]+)(?:\.([0-9]{1,2}))?")


def balance_fen(value: object) -> int | None:
    """`money` of act=query as signed fen, exactly; None when it is not a yuan amount."""
    m = BALANCE_MONEY_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        return None
    fen = int(m.group(2)) * 100 + int((m.group(3) or "").ljust(2, "0"))
    return -fen if m.group(1) else fen
