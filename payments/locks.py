"""Every select_for_update on payments models. Lock order: Payment, then Order, then CardSecret (cardshop/locks.py)."""

from django.db.models import QuerySet

from payments.models import Payment


def payment_qs_locked() -> QuerySet[Payment]:
    return Payment.objects.order_by("pk").select_for_update(of=("self",))
