"""The operators' audit trail: one append-only row per privileged action (refund, reveal, fulfil, breaker,
channel account edit, stock withdrawal), with the actor. Knows no app: the target is named by a string."""

from __future__ import annotations

from typing import Any

from core.models import AuditEvent


def audit_record(*, actor: str, action: str, target: str, **detail: Any) -> AuditEvent:
    """Write one audit row; call it inside the use case's transaction so the row and the change land together."""
    return AuditEvent.objects.create(actor=actor[:150], action=action[:64], target=target[:200], detail=detail)
