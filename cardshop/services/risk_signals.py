"""What the storefront tells risk besides checkouts: the signals its counters keep (risk.features)."""

from __future__ import annotations

from django.db import transaction

from cardshop.models import Order
from risk import facade as risk


def lookup_failed_record(*, ip: str, device: str) -> None:
    """An order lookup that matched nothing: brute force shows as many of these from one network."""
    risk.failure_record(kind="lookup_failed", ip=ip, device=device)


def payment_declined_record(*, order_no: str) -> None:
    """The provider refused a buyer's payment attempt: counted for the buyer's network and device once the caller
    commits (card testing shows as many of these)."""
    found = Order.objects.filter(order_no=order_no).values_list("buyer_ip", "buyer_device").first()
    if found and (found[0] or found[1]):
        ip, device = found[0] or "", found[1]
        transaction.on_commit(lambda: risk.failure_record(kind="payment_failed", ip=ip, device=device))
