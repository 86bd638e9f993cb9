"""Order use cases after checkout: paid (push and pull), expiry, cancel, manual fulfilment."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_fsm import can_proceed

from cardshop import jobs
from cardshop.locks import order_qs_locked
from cardshop.models import DeliveryKind, Order, OrderState
from cardshop.services.delivery import card_secrets_release, order_deliver_paid
from cardshop.services.events import OrderWrite, order_event_add
from cardshop.services.pricing import coupon_give_back, coupon_take_again
from cardshop.services.risk_signals import payment_declined_record
from cardshop.services.splits import split_at_provider_request
from core.audit import audit_record
from core.errors import DomainError
from core.money import Money
from payments import facade as payments
from payments.contracts import NotificationOutcome, PaymentFeeFacts, RefundRefused
from settlement import facade as settlement
from settlement.contracts import SettlementError

log = logging.getLogger(__name__)


def order_paid_apply(
    *, order_no: str, amount: Money, source: str, out_trade_no: str, fee_facts: PaymentFeeFacts | None = None
) -> Order:
    """A payment for `order_no` newly succeeded: mark the order paid and deliver, inside the caller's transaction.

    Late payments (order expired or cancelled) are honoured; a second payment for an order that is
    already paid is never delivered twice: it is refunded through its own channel, or held for an operator.
    `fee_facts` (the payment's channel account and fee, from the outcome) saves the ledger reading them again.
    """
    order = order_qs_locked().select_related("product").get(order_no=order_no)
    if amount != order.amount:
        # payments checked the amount against the payment it created from this order: this is a bug, not input.
        raise DomainError("amount_mismatch", "payment amount differs from the order amount")
    if not can_proceed(order.mark_paid):
        _extra_payment_apply(order, source=source, out_trade_no=out_trade_no, fee_facts=fee_facts)
        return order
    write = OrderWrite(order)
    write.event("paid", source=source, out_trade_no=out_trade_no, late=order.state != OrderState.PENDING)
    if order.state in (OrderState.EXPIRED, OrderState.CANCELLED):
        coupon_take_again(order=order)  # its use was given back when it lapsed; the discount is paid for now
    order.mark_paid()
    order.paid_by = out_trade_no
    write.changed("state", "paid_at", "paid_by")
    delivered = order_deliver_paid(write=write)
    write.flush()
    _ledger_book_payment(order, out_trade_no=out_trade_no, facts=fee_facts)
    if delivered:
        jobs.order_delivery_notify(order.pk)
    return order


def _ledger_book_payment(
    order: Order, *, out_trade_no: str, second: bool = False, facts: PaymentFeeFacts | None = None
) -> None:
    """Book what this payment brought, in the paid transaction: a sale when the order is delivered or paid and
    awaiting manual delivery (the merchant's money pending until its cycle releases it), suspense when it is
    undeliverable or a second payment. The ledger never fails the paid path: a sale it refuses is booked to
    suspense (an operator moves it), and if even that is refused the payment is left unbooked, logged and
    marked on the order, where the invariant check finds it."""
    if facts is None or facts.out_trade_no != out_trade_no:
        facts = payments.payment_fee_facts(out_trade_no=out_trade_no)
    money = {
        "out_trade_no": out_trade_no,
        "order_no": order.order_no,
        "gross_minor": facts.amount.amount_minor,
        "currency": facts.amount.currency,
        "channel_account_id": facts.account_id,
        "channel_fee_minor": facts.fee.amount_minor,
    }
    reason = "second_payment" if second else "undeliverable"
    if not second and order.state != OrderState.UNDELIVERABLE:
        try:
            settlement.sale_post(
                merchant_id=order.merchant_id,
                paid_at=order.paid_at,
                split_at_provider=facts.split_at_provider,
                **money,
            )
            if facts.split_at_provider:
                split_at_provider_request(order, out_trade_no=out_trade_no)
            return
        except SettlementError as exc:
            log.error(
                "order %s: the ledger refused sale %s (%s); booked to suspense", order.order_no, out_trade_no, exc
            )
            order_event_add(order=order, kind="ledger_sale_refused", out_trade_no=out_trade_no, code=exc.code)
            reason = "sale_refused"
    try:
        settlement.suspense_post(reason=reason, **money)
    except SettlementError as exc:
        log.exception("order %s: payment %s could not be booked to the ledger", order.order_no, out_trade_no)
        order_event_add(order=order, kind="ledger_unbooked", out_trade_no=out_trade_no, code=exc.code)


def _extra_payment_apply(
    order: Order, *, source: str, out_trade_no: str, fee_facts: PaymentFeeFacts | None = None
) -> None:
    """A second payment for an order already paid (two QRs, two channels, a provider's retry)."""
    log.error("order %s received another payment %s while %s", order.order_no, out_trade_no, order.state)
    _ledger_book_payment(order, out_trade_no=out_trade_no, second=True, facts=fee_facts)
    if not payments.extra_payments_refund_automatically():
        order_event_add(order=order, kind="extra_payment", source=source, out_trade_no=out_trade_no, held=True)
        return
    try:
        view = payments.payment_refund_request(
            out_trade_no=out_trade_no, reason="paid more than once", requested_by="system"
        )
    except RefundRefused as exc:  # the channel cannot refund: an operator returns it by hand
        order_event_add(order=order, kind="extra_payment", source=source, out_trade_no=out_trade_no, held=exc.code)
        return
    order_event_add(
        order=order, kind="extra_payment", source=source, out_trade_no=out_trade_no, refund_no=view.refund_no
    )
    jobs.refund_submit(view.refund_no)


def payment_notification_handle(
    *, channel_code: str, params: Mapping[str, list[str]], body: bytes, headers: Mapping[str, str] | None = None
) -> NotificationOutcome:
    """A provider callback: verify, dedupe, move the payment, and if it newly succeeded pay and deliver the order.

    One durable transaction: either all of it is applied and acknowledged, or nothing is.
    """
    with transaction.atomic(durable=True):
        outcome = payments.notification_apply(channel_code=channel_code, params=params, body=body, headers=headers)
        if outcome.newly_declined:
            payment_declined_record(order_no=outcome.reference)
        if outcome.newly_succeeded:
            order_paid_apply(
                order_no=outcome.reference,
                amount=outcome.amount,
                source="notify",
                out_trade_no=outcome.out_trade_no,
                fee_facts=outcome.fee_facts,
            )
        elif outcome.refund_newly_final:
            from cardshop.services.refunds import order_refund_follow

            order_refund_follow(view=payments.refund_view(refund_no=outcome.refund_no), source="notify")
    return outcome


def payment_sync(*, out_trade_no: str) -> bool:
    """Pull path: query the provider (no lock held), then apply the answer like a notify. True if newly paid."""
    observation = payments.payment_query(out_trade_no=out_trade_no)
    if observation is None:
        return False
    with transaction.atomic(durable=True):
        outcome = payments.query_result_apply(out_trade_no=out_trade_no, observation=observation)
        if outcome.newly_declined:
            payment_declined_record(order_no=outcome.reference)
        if outcome.newly_succeeded:
            order_paid_apply(
                order_no=outcome.reference,
                amount=outcome.amount,
                source="query",
                out_trade_no=out_trade_no,
                fee_facts=outcome.fee_facts,
            )
    return outcome.newly_succeeded


def order_expire(*, order_id: int) -> bool:
    """Expire one unpaid order whose time is up and release its stock. The order row is kept forever:
    a payment may still arrive for it."""
    with transaction.atomic(durable=True):
        order = order_qs_locked().filter(pk=order_id).first()
        if order is None or not can_proceed(order.expire) or order.expires_at > timezone.now():
            return False
        order.expire()
        order.save(update_fields=["state"])
        released = card_secrets_release(order=order)
        coupon_give_back(order=order)
        order_event_add(order=order, kind="expired", released=released)
        jobs.order_payments_close(order.order_no)
    return True


def order_payments_close(*, order_no: str) -> int:
    """The order lapsed: close its open payments at the providers. One the provider reports paid meanwhile is
    applied as a late payment (delivered if stock allows, else left for an operator). Returns how many."""
    late = payments.payments_close_for_reference(reference=order_no)
    return sum(payment_sync(out_trade_no=out_trade_no) for out_trade_no in late)


def orders_expire_due(*, limit: int = 500) -> int:
    # An order nobody reviewed in time expires like an unpaid one: its stock goes back on sale.
    due = Order.objects.filter(
        state__in=[OrderState.PENDING, OrderState.REVIEW], expires_at__lte=timezone.now()
    ).order_by("expires_at")
    return sum(order_expire(order_id=pk) for pk in due.values_list("pk", flat=True)[:limit])


def order_cancel(*, order_no: str, actor: str = "buyer") -> Order:
    with transaction.atomic(durable=True):
        order = order_qs_locked().get(order_no=order_no)
        if not can_proceed(order.cancel):
            raise DomainError("not_cancellable", _("This order can no longer be cancelled."))
        order.cancel()
        order.save(update_fields=["state"])
        released = card_secrets_release(order=order)
        coupon_give_back(order=order)
        order_event_add(order=order, kind="cancelled", actor=actor, released=released)
        # Like expiry: nobody may pay a QR that no longer has stock behind it.
        jobs.order_payments_close(order.order_no)
    return order


def order_fulfil_manual(*, order_no: str, note: str, actor: str) -> Order:
    """An operator hands over a manual-delivery order (the text is encrypted at rest)."""
    note = note.strip()
    if not note:
        raise DomainError("empty_delivery", _("Write what the buyer receives."))
    with transaction.atomic(durable=True):
        order = order_qs_locked().select_related("product").get(order_no=order_no)
        if order.product.delivery_kind != DeliveryKind.MANUAL or order.state != OrderState.PAID:
            raise DomainError("not_manual_paid", _("Only paid manual-delivery orders can be fulfilled by hand."))
        order.delivery_note = note
        order.deliver()
        order.save(update_fields=[*Order.DELIVERY_FIELDS, "delivery_note"])
        order_event_add(order=order, kind="delivered", actor=actor, manual=True)
        # The note is what the buyer receives (often a key): it stays out of the trail.
        audit_record(actor=actor, action="order.fulfil_manual", target=f"order:{order.pk}", order_no=order_no)
        jobs.order_delivery_notify(order.pk)
    return order


def order_sale_book(*, order_no: str, actor: str) -> bool:
    """Book the sale of a sold order whose payment waits in suspense because the ledger refused its sale when it
    was paid (a fee plan or holiday file the operator has since fixed): the gross moves from suspense to the
    sale's split. True when booked now, False when it already was; DomainError when there is nothing to book
    or the ledger refuses again (nothing changes)."""
    with transaction.atomic(durable=True):
        order = order_qs_locked().get(order_no=order_no)
        if order.state not in (OrderState.PAID, OrderState.DELIVERED) or not order.paid_by:
            raise DomainError("not_sold", _("Only paid or delivered orders have a sale to book."))
        try:
            view = settlement.sale_from_suspense_post(
                out_trade_no=order.paid_by, order_no=order.order_no, merchant_id=order.merchant_id
            )
        except SettlementError as exc:
            raise DomainError(exc.code, _("The ledger refused the sale again: %(why)s") % {"why": exc.message}) from exc
        if view is None:
            raise DomainError("not_in_suspense", _("This order's payment is not held in suspense."))
        if view.replayed:
            return False
        order_event_add(order=order, kind="ledger_booked", actor=actor, out_trade_no=order.paid_by)
        audit_record(actor=actor, action="order.sale_book", target=f"order:{order.pk}", order_no=order_no)
    return True


def order_delivery_retry(*, order_no: str, actor: str) -> bool:
    """After a restock, deliver an order that was paid while stock was gone."""
    with transaction.atomic(durable=True):
        order = order_qs_locked().select_related("product").get(order_no=order_no)
        if order.state != OrderState.UNDELIVERABLE:
            raise DomainError("not_undeliverable", _("Only undeliverable orders can be retried."))
        write = OrderWrite(order)
        delivered = order_deliver_paid(write=write, actor=actor)
        write.flush()
        if delivered and order.paid_by:  # its payment waited in suspense: now it is a sale
            settlement.sale_from_suspense_post(
                out_trade_no=order.paid_by, order_no=order.order_no, merchant_id=order.merchant_id
            )
        audit_record(
            actor=actor,
            action="order.delivery_retry",
            target=f"order:{order.pk}",
            order_no=order_no,
            delivered=delivered,
        )
        if delivered:
            jobs.order_delivery_notify(order.pk)
    return delivered
