"""Refund use cases: an operator asks, the channel confirms (answer, callback or query), the order follows."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django_fsm import can_proceed

from cardshop import jobs
from cardshop.locks import order_qs_locked
from cardshop.models import Order, OrderState
from cardshop.services.events import order_event_add
from core.audit import audit_record
from core.errors import DomainError
from payments import facade as payments
from payments.contracts import RefundStatus, RefundView
from settlement import facade as settlement
from settlement.contracts import SettlementError

log = logging.getLogger(__name__)


def order_refund_request(*, order_no: str, actor: str, reason: str = "", amount_minor: int | None = None) -> RefundView:
    """Refund a paid order: in full (what is left of its payment), or `amount_minor` of it. A second request while
    one is on its way returns it and changes nothing.

    A refund of part of the order leaves it as it is (delivered stays delivered): only the refund that takes the
    rest moves it to refunding, then refunded. Lock order: the payment (inside payments.refund_request), then the
    order.
    """
    with transaction.atomic(durable=True):
        state = Order.objects.values_list("state", flat=True).get(order_no=order_no)
        if state not in (OrderState.PAID, OrderState.DELIVERED, OrderState.UNDELIVERABLE, OrderState.REFUNDING):
            raise DomainError("not_refundable", f"an order in state {state!r} cannot be refunded")
        view = payments.refund_request(
            reference=order_no, reason=reason or "operator refund", requested_by=actor, amount_minor=amount_minor
        )
        order = order_qs_locked().get(order_no=order_no)
        if view.newly_requested:
            detail = {"refund_no": view.refund_no}
            if view.whole and can_proceed(order.refund_start):
                order.refund_start()
                order.save(update_fields=["state", "refund_from"])
            elif not view.whole:  # part of it: the order stays as it is
                detail["amount"] = view.amount.amount_minor
            kind = "refund_requested" if view.whole else "partial_refund_requested"
            order_event_add(order=order, kind=kind, actor=actor, **detail)
            audit_record(
                actor=actor,
                action="order.refund" if view.whole else "order.refund_partial",
                target=f"order:{order.pk}",
                order_no=order_no,
                refund_no=view.refund_no,
                amount_minor=view.amount.amount_minor,
                currency=view.amount.currency,
                reason=reason,
            )
            jobs.refund_submit(view.refund_no)
        elif view.whole and order.state != OrderState.REFUNDING:
            raise DomainError("not_refundable", f"an order in state {order.state!r} cannot be refunded")
    return view


def order_refund_follow(*, view: RefundView, source: str) -> None:
    """The refund became final: the order follows, inside the caller's transaction. A refund of a second
    payment (the order was paid by another) only leaves a trace on the order. A succeeded refund reverses what
    its payment booked in the ledger (the sale, or its suspense), whatever state the order is in."""
    order = order_qs_locked().get(order_no=view.reference)
    if view.status == RefundStatus.SUCCEEDED:
        _ledger_reverse(order, view=view)
    if order.paid_by and view.out_trade_no != order.paid_by:
        order_event_add(
            order=order, kind=f"extra_payment_refund_{view.status}", source=source, refund_no=view.refund_no
        )
        return
    if not view.whole:  # part of the order: it stays as it is, its timeline says what went back
        order_event_add(
            order=order,
            kind="partially_refunded" if view.status == RefundStatus.SUCCEEDED else f"partial_refund_{view.status}",
            source=source,
            refund_no=view.refund_no,
            amount=view.amount.amount_minor,
        )
        return
    if view.status == RefundStatus.SUCCEEDED and can_proceed(order.refund_complete):
        order.refund_complete()
        order.save(update_fields=["state", "refunded_at"])
        order_event_add(order=order, kind="refunded", source=source, refund_no=view.refund_no)
        jobs.order_refund_notify(order.pk)
    elif view.status == RefundStatus.FAILED and can_proceed(order.refund_abort):
        order.refund_abort()
        order.save(update_fields=["state"])
        order_event_add(order=order, kind="refund_failed", source=source, refund_no=view.refund_no)
    else:
        log.error("refund %s is %s but order %s is %s", view.refund_no, view.status, order.order_no, order.state)


def _ledger_reverse(order: Order, *, view: RefundView) -> None:
    """The money went back: reverse what the payment booked. Like the paid path, the refund is never held up by
    the ledger: a reversal it refuses is logged and marked on the order, where the invariant check finds it."""
    try:
        settlement.refund_post(
            refund_no=view.refund_no,
            out_trade_no=view.out_trade_no,
            amount_minor=view.amount.amount_minor,
            currency=view.amount.currency,
            channel_returns_fee=payments.payment_fee_facts(out_trade_no=view.out_trade_no).refund_returns_fee,
        )
    except SettlementError as exc:
        log.exception("refund %s of order %s could not be reversed in the ledger", view.refund_no, order.order_no)
        order_event_add(order=order, kind="ledger_unbooked", refund_no=view.refund_no, code=exc.code)


def refund_sync(*, refund_no: str, source: str = "task") -> str:
    """Submit or query one refund at the channel (no lock held during I/O), then apply the answer."""
    observation = payments.refund_execute(refund_no=refund_no, notify_url=_refund_notify_url(refund_no))
    if observation is None:  # already final, or nothing known yet (the janitor asks again)
        return payments.refund_view(refund_no=refund_no).status
    with transaction.atomic(durable=True):
        view = payments.refund_result_apply(refund_no=refund_no, observation=observation)
        if view.newly_final:
            order_refund_follow(view=view, source=source)
    return view.status


def refunds_sync_due() -> int:
    done = 0
    for refund_no in payments.refunds_claim_due():
        try:
            done += refund_sync(refund_no=refund_no, source="janitor") in (RefundStatus.SUCCEEDED, RefundStatus.FAILED)
        except Exception:  # one provider error must not stop the sweep; the ladder retries
            log.exception("refund sync of %s failed", refund_no)
    return done


def _refund_notify_url(refund_no: str) -> str:
    channel_code = payments.refund_view(refund_no=refund_no).channel_code
    return settings.CARDSHOP_PUBLIC_URL + reverse("notify", args=[channel_code])
