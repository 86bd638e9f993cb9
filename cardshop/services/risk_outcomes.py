"""What became of orders, in the words risk's backtest uses (settings.RISK_ORDER_OUTCOMES points here)."""

from __future__ import annotations

from cardshop.models import Order, OrderState

S = OrderState
OUTCOME_OF_STATE = {
    S.PAID: "paid",
    S.DELIVERED: "paid",
    S.UNDELIVERABLE: "paid",
    S.REFUNDING: "refunded",
    S.REFUNDED: "refunded",
    S.EXPIRED: "expired",
    S.CANCELLED: "expired",
    S.PENDING: "open",
    S.REVIEW: "open",
}


def order_outcomes(order_nos: list[str]) -> dict[str, str]:
    """{order_no: paid | refunded | expired | open} for the orders that exist; one query per 1,000."""
    found: dict[str, str] = {}
    for i in range(0, len(order_nos), 1000):
        rows = Order.objects.filter(order_no__in=order_nos[i : i + 1000]).values_list("order_no", "state")
        found.update({no: OUTCOME_OF_STATE.get(state, "open") for no, state in rows})
    return found
