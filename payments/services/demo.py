"""The demo shop's past (cardshop's seed_demo only): move one reference's payments and refunds, made just now
through the real services, back to the times the demo history chose. Timestamps only: no status, amount or
provider data changes. Nothing else may call it; production has no way to rewrite payment history."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import F

from payments.models import Payment, Refund


def demo_payments_backdate(
    *,
    reference: str,
    created: datetime,
    succeeded: datetime | None,
    last: datetime,
    refund_asked: datetime | None = None,
    refund_done: datetime | None = None,
) -> None:
    payments = Payment.objects.filter(reference=reference)
    payments.update(created_at=created, updated_at=last)
    if succeeded is not None:
        payments.filter(succeeded_at__isnull=False).update(succeeded_at=succeeded)
    payments.filter(next_query_at__isnull=False).update(next_query_at=F("created_at") + timedelta(seconds=15))
    if refund_asked is not None:
        Refund.objects.filter(payment__reference=reference).update(
            created_at=refund_asked, updated_at=refund_done or last, succeeded_at=refund_done
        )
