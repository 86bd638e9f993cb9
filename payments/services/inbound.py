"""A provider callback as the adapters read it, built one way for every callback (payments, refunds, splits)."""

from __future__ import annotations

from collections.abc import Mapping

from payments.channels.base import Inbound
from payments.contracts import NotificationRejected


def inbound_of(*, params: Mapping[str, list[str]], body: bytes, headers: Mapping[str, str] | None) -> Inbound:
    """Every parameter must appear once: a repeated one could be verified in one copy and read in another."""
    flat: dict[str, str] = {}
    for key, values in params.items():
        if len(values) != 1:
            raise NotificationRejected("repeated_parameter", f"parameter {key[:40]!r} must appear once")
        flat[key] = values[0]
    return Inbound(params=flat, body=body, headers={k.lower(): v for k, v in (headers or {}).items()})
