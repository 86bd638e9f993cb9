"""Every select_for_update on payments models. Lock order: Payment, Refund, TradeSplit, then cardshop's Order and CardSecret."""

from django.db.models import QuerySet

from payments.models import Payment, Refund, TradeSplit


def payment_qs_locked() -> QuerySet[Payment]:
    return Payment.objects.order_by("pk").select_for_update(of=("self",))


def refund_qs_locked() -> QuerySet[Refund]:
    return Refund.objects.order_by("pk").select_for_update(of=("self",))


def split_qs_locked() -> QuerySet[TradeSplit]:
    """After the payment's lock, never before it (the global lock order: payment, refund, split)."""
    return TradeSplit.objects.order_by("pk").select_for_update(of=("self",))
