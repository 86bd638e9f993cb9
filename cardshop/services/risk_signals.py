"""What the storefront tells risk besides checkouts: the signals its counters keep (risk.features)."""

from __future__ import annotations

from risk import facade as risk


def lookup_failed_record(*, ip: str, device: str) -> None:
    """An order lookup that matched nothing: brute force shows as many of these from one network."""
    risk.failure_record(kind="lookup_failed", ip=ip, device=device)
