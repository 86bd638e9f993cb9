"""The janitor's back-off ladder: when to ask a provider again about a payment or refund it has not settled,
and the claim of the rows whose turn has come."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models, transaction
from django.utils import timezone

# Gap before query n (0-based); after the ladder, hourly; give up asking after a day (reconciliation takes over).
LADDER_SECONDS = (15, 60, 180, 600, 3600)
THEN_EVERY_SECONDS = 3600
GIVE_UP_AFTER = timedelta(days=1)


def next_query_at(*, attempts: int, created_at: datetime, now: datetime) -> datetime | None:
    """When to query next after `attempts` queries already made; None once the day is over."""
    gap = LADDER_SECONDS[attempts] if attempts < len(LADDER_SECONDS) else THEN_EVERY_SECONDS
    at = now + timedelta(seconds=gap)
    return at if at - created_at <= GIVE_UP_AFTER else None


def claim_due(model: type[models.Model], statuses: list[str], *, limit: int) -> list[models.Model]:
    """Rows of `model` (payments or refunds) in `statuses` whose next query is due, each moved one rung down
    the ladder. Claimed with SKIP LOCKED so two janitors never ask about the same row in the same round."""
    now = timezone.now()
    with transaction.atomic():
        due = list(
            model.objects.select_for_update(skip_locked=True)
            .filter(status__in=statuses, next_query_at__lte=now)
            .order_by("next_query_at")[:limit]
        )
        for row in due:
            row.query_attempts += 1
            row.next_query_at = next_query_at(attempts=row.query_attempts, created_at=row.created_at, now=now)
        model.objects.bulk_update(due, ["query_attempts", "next_query_at"])
    return due
