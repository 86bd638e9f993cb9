"""Every select_for_update on payments models. Lock order: Payment, Refund, then cardshop's Order and CardSecret."""

from django.db.models import QuerySet

from payments.models import Payment, Refund


def payment_qs_locked() -> QuerySet[Payment]:
    return Payment.objects.order_by("pk").select_for_update(of=("self",))


def refund_qs_locked() -> QuerySet[Refund]:
    return Refund.objects.order_by("pk").select_for_update(of=("self",))
