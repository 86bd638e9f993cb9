"""The janitor's back-off ladder: when to ask a provider again about a payment or refund it has not settled."""

from __future__ import annotations

from datetime import datetime, timedelta

# Gap before query n (0-based); after the ladder, hourly; give up asking after a day (reconciliation takes over).
LADDER_SECONDS = (15, 60, 180, 600, 3600)
THEN_EVERY_SECONDS = 3600
GIVE_UP_AFTER = timedelta(days=1)


def next_query_at(*, attempts: int, created_at: datetime, now: datetime) -> datetime | None:
    """When to query next after `attempts` queries already made; None once the day is over."""
    gap = LADDER_SECONDS[attempts] if attempts < len(LADDER_SECONDS) else THEN_EVERY_SECONDS
    at = now + timedelta(seconds=gap)
    return at if at - created_at <= GIVE_UP_AFTER else None
