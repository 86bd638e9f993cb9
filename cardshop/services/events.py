"""The order timeline, and OrderWrite: one UPDATE and one INSERT for all a use case changes on an order."""

from __future__ import annotations

from typing import Any

from cardshop.models import Order, OrderEvent
from cardshop.models.webhooks import PUBLISHED_KINDS


def order_event_add(*, order: Order, kind: str, actor: str = "system", **detail: Any) -> OrderEvent:
    pending = kind in PUBLISHED_KINDS  # the webhook outbox, in the same row (cardshop.services.webhooks)
    return OrderEvent.objects.create(order=order, kind=kind, actor=actor, detail=detail, webhook_pending=pending)


class OrderWrite:
    """Collects a locked order's changed fields and new events; `flush()` writes them at once.

    The paying notify moves an order PENDING -> PAID -> DELIVERED; writing each step separately
    would double the statements on the hottest path for no gain in safety (same transaction).
    """

    def __init__(self, order: Order) -> None:
        self.order = order
        self.fields: set[str] = set()
        self.events: list[OrderEvent] = []

    def changed(self, *fields: str) -> None:
        self.fields.update(fields)

    def event(self, kind: str, actor: str = "system", **detail: Any) -> None:
        pending = kind in PUBLISHED_KINDS
        self.events.append(OrderEvent(order=self.order, kind=kind, actor=actor, detail=detail, webhook_pending=pending))

    def flush(self) -> None:
        if self.fields:
            self.order.save(update_fields=sorted(self.fields))
        if self.events:
            OrderEvent.objects.bulk_create(self.events)
        self.fields, self.events = set(), []
