"""Reads the ledger's invariant check asks of payments: which trades took money and which refunds gave it back.

Plain values out (out_trade_no / refund_no strings): settlement matches them against its idempotency keys.
"""

from __future__ import annotations

from datetime import datetime

from payments.contracts import RefundStatus
from payments.models import Payment, Refund


def payments_succeeded_out_trade_nos(*, since: datetime | None = None, until: datetime | None = None) -> list[str]:
    """The out_trade_no of every payment that took the buyer's money (succeeded, even if refunded since), by
    when it succeeded; `since` inclusive, `until` exclusive. One query."""
    qs = Payment.objects.filter(succeeded_at__isnull=False)
    if since is not None:
        qs = qs.filter(succeeded_at__gte=since)
    if until is not None:
        qs = qs.filter(succeeded_at__lt=until)
    return list(qs.order_by("pk").values_list("out_trade_no", flat=True))


def refunds_succeeded(*, since: datetime | None = None, until: datetime | None = None) -> dict[str, str]:
    """{refund_no: the refunded payment's out_trade_no} for every final (succeeded) refund. One query."""
    qs = Refund.objects.filter(status=RefundStatus.SUCCEEDED)
    if since is not None:
        qs = qs.filter(succeeded_at__gte=since)
    if until is not None:
        qs = qs.filter(succeeded_at__lt=until)
    return dict(qs.order_by("pk").values_list("refund_no", "payment__out_trade_no"))
