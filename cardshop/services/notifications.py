"""Buyer emails. Sent from tasks after commit, at least once: Order.notify_claimed_at is a leased claim,
Order.notified_at records that the mail backend accepted the message. The refund mail does the same with
Order.refund_notify_claimed_at and Order.refund_notified_at."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from cardshop.models import Order, OrderState
from cardshop.selectors import order_refund_for_buyer

log = logging.getLogger(__name__)

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


class MailNotAccepted(OSError):
    """The backend returned without accepting the message; an OSError so the task's retry covers it."""


def _claim_lease() -> timedelta:
    # Longer than any send can take (SMTP timeout), so a live sender is never overtaken by the sweep.
    return timedelta(seconds=settings.CARDSHOP_MAIL_CLAIM_LEASE_SECONDS)


def _claimable(now, claimed_field: str = "notify_claimed_at") -> Q:
    return Q(**{f"{claimed_field}__isnull": True}) | Q(**{f"{claimed_field}__lt": now - _claim_lease()})


def _order_mail_send_once(
    *,
    order_id: int,
    claimed_field: str,
    sent_field: str,
    only: Q,
    compose: Callable[[Order], tuple[str, str]],
) -> bool:
    """Claim, send, mark sent: one buyer mail at least once, and in practice once (see the delivery mail).

    `compose` returns (subject, body) and runs in the language the buyer shopped in.
    """
    now = timezone.now()
    unsent = {f"{sent_field}__isnull": True}
    claimed = Order.objects.filter(_claimable(now, claimed_field), only, pk=order_id, **unsent).update(
        **{claimed_field: now}
    )
    if not claimed:
        return False
    order = Order.objects.select_related("product").get(pk=order_id)
    try:
        with translation.override(order.language or settings.LANGUAGE_CODE):  # the language the buyer shopped in
            subject, body = compose(order)
            accepted = send_mail(subject=subject, message=body, from_email=None, recipient_list=[order.email])
        if accepted != 1:
            raise MailNotAccepted(f"mail backend accepted {accepted} messages for order {order.order_no}")
    except Exception:
        Order.objects.filter(pk=order_id, **{claimed_field: now}, **unsent).update(**{claimed_field: None})
        raise
    Order.objects.filter(pk=order_id, **unsent).update(**{sent_field: timezone.now()})
    return True


def _delivery_mail(order: Order) -> tuple[str, str]:
    context = {"order": order, "link": order_link(order.order_no)}
    return (
        _("Your order %(no)s is ready") % {"no": order.order_no},
        render_to_string("emails/order_delivered.txt", context),
    )


def order_delivery_email_send(*, order_id: int) -> bool:
    """Send the 'your order is ready' mail at least once, and in practice once.

    A sender first claims the order with a conditional UPDATE that only matches an unsent order whose
    last claim (if any) has lapsed, so concurrent task runs and sweeps send it once. `notified_at` is set
    only after the backend accepted the message; a failed send gives the claim back for a retry, and a
    sender that dies between claim and send leaves a claim the sweep takes over once its lease has run out.
    """
    return _order_mail_send_once(
        order_id=order_id,
        claimed_field="notify_claimed_at",
        sent_field="notified_at",
        only=Q(),
        compose=_delivery_mail,
    )


def order_delivery_emails_resend_missed(*, older_than_seconds: int = 300, limit: int = 200) -> int:
    """Send mails still unsent: the after-commit task was lost (the embedded brokers drop in-flight tasks on
    a crash), or its sender died after claiming (the claim's lease has run out). Fresh deliveries are left
    to their task for `older_than_seconds`. Each order is claimed before sending, so sweeps racing each other
    or a late task send it once."""
    now = timezone.now()
    missed = Order.objects.filter(
        _claimable(now),
        state=OrderState.DELIVERED,
        notified_at__isnull=True,
        delivered_at__lt=now - timedelta(seconds=older_than_seconds),
    ).order_by("delivered_at")
    return _send_each(missed.values_list("pk", flat=True)[:limit], order_delivery_email_send, "delivery")


def _send_each(order_ids, send, what: str) -> int:
    """A sweep's sends, one order at a time: how many mails went out."""
    sent = 0
    for pk in order_ids:
        try:
            sent += send(order_id=pk)
        except Exception:  # one bad address or a backend hiccup must not stop the sweep; the next run retries
            log.exception("%s mail for order %s failed", what, pk)
    return sent


def _refund_mail(order: Order) -> tuple[str, str]:
    refund = order_refund_for_buyer(order=order)
    context = {
        "order": order,
        "amount": refund.amount.display() if refund else order.amount_label,
        "link": order_link(order.order_no),
    }
    return (
        _("Your order %(no)s was refunded") % {"no": order.order_no},
        render_to_string("emails/order_refunded.txt", context),
    )


def order_refund_email_send(*, order_id: int) -> bool:
    """Tell the buyer their refund is complete, at least once and in practice once, like the delivery mail.

    Only a REFUNDED order is claimed: a refund still in progress (or one the channel refused) mails nobody.
    """
    return _order_mail_send_once(
        order_id=order_id,
        claimed_field="refund_notify_claimed_at",
        sent_field="refund_notified_at",
        only=Q(state=OrderState.REFUNDED),
        compose=_refund_mail,
    )


def order_refund_emails_resend_missed(*, older_than_seconds: int = 300, limit: int = 200) -> int:
    """Send refund mails still unsent, for the reasons the delivery sweep exists (lost task, dead sender)."""
    now = timezone.now()
    missed = Order.objects.filter(
        _claimable(now, "refund_notify_claimed_at"),
        state=OrderState.REFUNDED,
        refund_notified_at__isnull=True,
        refunded_at__lt=now - timedelta(seconds=older_than_seconds),
    ).order_by("refunded_at")
    return _send_each(missed.values_list("pk", flat=True)[:limit], order_refund_email_send, "refund")
