"""Settlement's Celery tasks (found by the app's autodiscover_tasks). Each calls one service and is idempotent."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from settlement.services.releases import releases_due


@shared_task(name="settlement.releases_due")
def releases_due_task() -> int:
    """Release what is due now; a release already posted is never posted again (its row says released)."""
    return releases_due(now=timezone.now())
