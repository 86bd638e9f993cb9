"""Settlement's Celery tasks (found by the app's autodiscover_tasks). Each calls one service and is idempotent."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from settlement.payouts import payout_submit, payouts_create_due, payouts_resolve_due
from settlement.services.releases import releases_due


@shared_task(name="settlement.releases_due")
def releases_due_task() -> int:
    """Release what is due now; a release already posted is never posted again (its row says released)."""
    return releases_due(now=timezone.now())


@shared_task(name="settlement.payouts_create_due")
def payouts_create_due_task() -> int:
    """Create the payouts due now (one per party at most: a second run finds the first's payout open)."""
    return len(payouts_create_due())


@shared_task(name="settlement.payout_submit")
def payout_submit_task(payout_no: str) -> str:
    """Send one payout; a final payout is left alone, one in doubt is asked about before anything is sent."""
    return payout_submit(payout_no=payout_no)


@shared_task(name="settlement.payouts_resolve_due")
def payouts_resolve_due_task() -> int:
    return payouts_resolve_due()
