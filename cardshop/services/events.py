"""The order timeline: one helper so every service records events the same way."""

from __future__ import annotations

from typing import Any

from cardshop.models import Order, OrderEvent


def order_event_add(*, order: Order, kind: str, actor: str = "system", **detail: Any) -> OrderEvent:
    return OrderEvent.objects.create(order=order, kind=kind, actor=actor, detail=detail)
