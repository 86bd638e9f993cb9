"""Buyer emails. Sent from tasks after commit; idempotent through Order.notified_at."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from cardshop.models import Order, OrderState

ORDER_LINK_SALT = "cardshop.order-link"
ORDER_LINK_MAX_AGE = 60 * 60 * 24 * 30


def order_link_token(order_no: str) -> str:
    return signing.dumps(order_no, salt=ORDER_LINK_SALT, compress=True)


def order_link_token_check(token: str) -> str | None:
    try:
        return signing.loads(token, salt=ORDER_LINK_SALT, max_age=ORDER_LINK_MAX_AGE)
    except signing.BadSignature:
        return None


def order_link(order_no: str) -> str:
    path = reverse("order_detail", args=[order_no])
    return f"{settings.CARDSHOP_PUBLIC_URL}{path}?t={order_link_token(order_no)}"


def order_delivery_email_send(*, order_id: int) -> bool:
    """Send the 'your order is ready' mail once. The claim is a conditional UPDATE, so concurrent
    or repeated task runs send at most one; a failed send gives the claim back for a retry."""
    claimed = Order.objects.filter(pk=order_id, notified_at__isnull=True).update(notified_at=timezone.now())
    if not claimed:
        return False
    order = Order.objects.select_related("product").get(pk=order_id)
    try:
        with translation.override(order.language or settings.LANGUAGE_CODE):  # the language the buyer shopped in
            context = {"order": order, "link": order_link(order.order_no)}
            send_mail(
                subject=_("Your order %(no)s is ready") % {"no": order.order_no},
                message=render_to_string("emails/order_delivered.txt", context),
                from_email=None,
                recipient_list=[order.email],
            )
    except Exception:
        Order.objects.filter(pk=order_id).update(notified_at=None)
        raise
    return True


def order_delivery_emails_resend_missed(*, older_than_seconds: int = 300, limit: int = 200) -> int:
    """Send mails whose after-commit task was lost (the embedded brokers drop in-flight tasks on a crash)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    missed = Order.objects.filter(state=OrderState.DELIVERED, notified_at__isnull=True, delivered_at__lt=cutoff)
    return sum(order_delivery_email_send(order_id=pk) for pk in missed.values_list("pk", flat=True)[:limit])
