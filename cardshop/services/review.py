"""The risk review queue: an order risk held for review waits in REVIEW with its stock reserved. An operator
approves it (the buyer may pay now, with a fresh deadline) or rejects it with a reason (its stock goes back on
sale). Both are audited and on the order's timeline; one nobody reviews in time expires like an unpaid order."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_fsm import can_proceed

from cardshop.locks import order_qs_locked
from cardshop.models import Order
from cardshop.services.delivery import card_secrets_release
from cardshop.services.events import order_event_add
from core.audit import audit_record
from core.errors import DomainError


def order_review_approve(*, order_no: str, actor: str) -> Order:
    with transaction.atomic(durable=True):
        order = order_qs_locked().get(order_no=order_no)
        if not can_proceed(order.review_approve):
            raise DomainError("not_in_review", _("This order is not waiting for review."))
        order.review_approve()
        order.expires_at = timezone.now() + timedelta(seconds=settings.CARDSHOP_ORDER_TTL_SECONDS)
        order.save(update_fields=["state", "expires_at"])
        order_event_add(order=order, kind="review_approved", actor=actor)
        audit_record(actor=actor, action="order.review_approved", target=order_no)
    return order


def order_review_reject(*, order_no: str, actor: str, reason: str) -> Order:
    reason = reason.strip()
    if not reason:
        raise DomainError("reason_required", _("Say why the order is rejected."))
    with transaction.atomic(durable=True):
        order = order_qs_locked().get(order_no=order_no)
        if not can_proceed(order.review_reject):
            raise DomainError("not_in_review", _("This order is not waiting for review."))
        order.review_reject()
        order.save(update_fields=["state"])
        released = card_secrets_release(order=order)
        order_event_add(order=order, kind="review_rejected", actor=actor, reason=reason[:200], released=released)
        audit_record(actor=actor, action="order.review_rejected", target=order_no, reason=reason[:200])
    return order
