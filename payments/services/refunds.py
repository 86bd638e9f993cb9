"""Refund use cases: request (intent + payment lock), execute at the provider (I/O), apply what it said."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_fsm import can_proceed

from core import ids
from core.money import Money
from payments import schedule
from payments.channels import registry
from payments.channels.base import (
    Capability,
    RefundObservation,
    RefundRequest,
    RefundState,
    Retryable,
    Terminal,
    Unknown,
)
from payments.contracts import RefundRefused, RefundView, SplitStatus
from payments.locks import payment_qs_locked, refund_qs_locked, split_qs_locked
from payments.models import Payment, PaymentStatus, Refund, RefundStatus, RoutingSettings, TradeSplit
from payments.services import splits
from payments.services.adapters import adapter_for

log = logging.getLogger(__name__)

_IN_FLIGHT = [RefundStatus.REQUESTED, RefundStatus.PENDING, RefundStatus.UNKNOWN]


def _view(refund: Refund, payment: Payment, *, newly_final: bool = False, newly_requested: bool = False) -> RefundView:
    counted = refund.amount_minor if refund.status == RefundStatus.SUCCEEDED else 0  # in refunded_minor already
    left_before = payment.amount_minor - (payment.refunded_minor - counted)
    return RefundView(
        whole=refund.amount_minor == left_before,
        newly_requested=newly_requested,
        refund_no=refund.refund_no,
        channel_code=payment.channel_code,
        out_trade_no=payment.out_trade_no,
        reference=payment.reference,
        status=refund.status,
        amount=refund.amount,
        newly_final=newly_final,
        reason=refund.reason,
        requested_by=refund.requested_by,
    )


def refund_request(*, reference: str, reason: str, requested_by: str, amount_minor: int | None = None) -> RefundView:
    """Write a refund of the payment that paid `reference`: of `amount_minor`, or of all that is left of it (None).
    Runs inside the caller's transaction.

    The payment row is locked first, so two clicks serialise: the second finds the refund on its way and returns
    it (asking for another amount meanwhile is refused). The provider is called later, after commit
    (`refund_execute`).
    """
    payment = (
        payment_qs_locked()
        .select_related("account")
        .filter(reference=reference, status__in=[PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDING])
        .order_by("succeeded_at", "pk")
        .first()
    )
    if payment is None:
        raise RefundRefused("not_paid", "no paid payment to refund for this order")
    return _refund_write(payment, reason=reason, requested_by=requested_by, amount_minor=amount_minor)


def payment_refund_request(*, out_trade_no: str, reason: str, requested_by: str) -> RefundView:
    """Write a full refund of one given payment (a second payment of an order already paid); same rules."""
    payment = (
        payment_qs_locked()
        .select_related("account")
        .filter(out_trade_no=out_trade_no, status__in=[PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDING])
        .first()
    )
    if payment is None:
        raise RefundRefused("not_paid", "this payment is not paid, or already refunded")
    return _refund_write(payment, reason=reason, requested_by=requested_by)


def extra_payments_refund_automatically() -> bool:
    """The operator's choice for a second payment of an order already paid: refund it, or hold it for them."""
    chosen = RoutingSettings.objects.order_by("pk").values_list("extra_payments_auto_refund", flat=True).first()
    return True if chosen is None else chosen


def _refund_write(payment: Payment, *, reason: str, requested_by: str, amount_minor: int | None = None) -> RefundView:
    left = payment.amount_minor - payment.refunded_minor
    live = Refund.objects.filter(payment=payment, status__in=_IN_FLIGHT).first()
    if live is not None:
        if amount_minor is not None and amount_minor != live.amount_minor:
            raise RefundRefused("refund_in_progress", _("A refund of this payment is on its way: wait for it first."))
        return _view(live, payment)
    if payment.status != PaymentStatus.SUCCEEDED or left <= 0:
        raise RefundRefused("not_refundable", _("This payment is refunded already."))
    amount_minor = left if amount_minor is None else amount_minor
    if not 0 < amount_minor <= left:
        raise RefundRefused(
            "refund_too_large",
            _("At most %(left)s can still be refunded.") % {"left": Money(left, payment.currency).display()},
        )
    adapter_cls = registry.get(payment.channel_code)
    if adapter_cls is None or Capability.REFUND not in adapter_cls.capabilities:
        raise RefundRefused("no_refund_channel", f"channel {payment.channel_code} cannot refund")
    if amount_minor != payment.amount_minor:
        if Capability.PARTIAL_REFUND not in adapter_cls.capabilities:
            raise RefundRefused(
                "no_partial_refund", _("This payment's channel refunds only whole payments, never part of one.")
            )
        if TradeSplit.objects.filter(payment=payment).exclude(status=SplitStatus.CANCELLED).exists():
            # What a split moved decides what a refund takes back: such a payment is refunded whole.
            raise RefundRefused("partial_refund_split", _("A payment split at the provider is refunded whole."))
    _splits_settle_for_refund(payment)
    now = timezone.now()
    payment.refund_start()
    payment.save(update_fields=["status", "updated_at"])
    refund = Refund.objects.create(
        refund_no=ids.out_trade_no("R"),
        payment=payment,
        amount_minor=amount_minor,
        currency=payment.currency,
        reason=reason[:200],
        requested_by=requested_by[:150],
        next_query_at=schedule.next_query_at(attempts=0, created_at=now, now=now),
    )
    return _view(refund, payment, newly_requested=True)


def _splits_settle_for_refund(payment: Payment) -> None:
    """A split not sent yet is cancelled (nothing to take back); one the provider is processing must finish
    first, since what it moved decides what the refund takes back. A succeeded one rides on the refund."""
    for split in split_qs_locked().filter(payment=payment, status__in=splits.LIVE):
        if not can_proceed(split.cancel):
            raise RefundRefused(
                "split_in_progress", "the provider is still splitting this payment: refund it once the split is done"
            )
        split.cancel(reason=_("refunded before the split was sent"))
        split.save(update_fields=["status", "failure_reason", "next_query_at", "updated_at"])


def _request(refund: Refund, notify_url: str) -> RefundRequest:
    p = refund.payment
    return RefundRequest(
        refund_no=refund.refund_no,
        out_trade_no=p.wire_out_trade_no,
        provider_trade_no=p.provider_trade_no or "",
        amount=refund.amount,
        total=p.amount,
        reason=refund.reason or "refund",
        notify_url=notify_url,
        provider_refund_no=refund.provider_refund_no,
        split_returns=splits.split_to_return(p),
    )


def refund_execute(*, refund_no: str, notify_url: str) -> RefundObservation | None:
    """Ask the provider to refund, or what became of a refund already asked (I/O; call outside transactions).

    A refund in doubt is queried first, then re-submitted under the same refund_no (the provider's
    idempotency key), never under a new one. None means "nothing known yet; the janitor asks again".
    """
    refund = Refund.objects.select_related("payment__account").get(refund_no=refund_no)
    if refund.status in (RefundStatus.SUCCEEDED, RefundStatus.FAILED):
        return None
    adapter = adapter_for(refund.payment.account)
    request = _request(refund, notify_url)
    try:
        if refund.status != RefundStatus.REQUESTED:
            seen = adapter.refund_query(request)
            if seen is not None:
                return seen
        return adapter.refund(request)
    except Terminal as exc:
        return RefundObservation(
            refund_no=refund_no,
            provider_refund_no="",
            status=RefundState.FAILED,
            amount=refund.amount,
            provider_status=exc.code,
        )
    except Retryable as exc:
        log.warning("refund %s not sent (%s); the janitor retries", refund_no, exc.code)
        return None
    except Unknown as exc:
        with transaction.atomic():
            locked = refund_qs_locked().get(pk=refund.pk)
            if can_proceed(locked.mark_unknown):
                locked.mark_unknown(error_code=exc.code)
                locked.save(update_fields=["status", "error_code", "updated_at"])
        log.warning("refund %s outcome unknown (%s); the janitor queries", refund_no, exc.code)
        return None


def refund_result_apply(*, refund_no: str, observation: RefundObservation) -> RefundView:
    """Apply a refund result (submit answer or query) under the payment and refund locks; caller's transaction."""
    payment_id = Refund.objects.values_list("payment_id", flat=True).get(refund_no=refund_no)
    payment = payment_qs_locked().get(pk=payment_id)
    refund = refund_qs_locked().get(refund_no=refund_no)
    if observation.refund_no != refund_no or observation.amount != refund.amount:
        log.error("refund answer for %s names another refund or amount; ignored", refund_no)
        return _view(refund, payment)
    final = refund_observation_apply(payment=payment, refund=refund, observation=observation)
    return _view(refund, payment, newly_final=final)


def refund_observation_apply(*, payment: Payment, refund: Refund, observation: RefundObservation) -> bool:
    """Move a locked refund (and its payment) by what the provider said; True when it just became final.

    Monotonic: a refund that succeeded is never failed by a late report, and a failed one stays failed.
    """
    if observation.status == RefundState.SUCCEEDED and can_proceed(refund.succeed):
        refund.succeed(provider_refund_no=observation.provider_refund_no)
        refund.save(update_fields=["status", "provider_refund_no", "succeeded_at", "next_query_at", "updated_at"])
        payment.refunded_minor += refund.amount_minor
        if payment.refunded_minor >= payment.amount_minor and can_proceed(payment.refund_complete):
            payment.refund_complete()
        elif can_proceed(payment.refund_partly_done):
            payment.refund_partly_done()
        payment.save(update_fields=["status", "refunded_minor", "updated_at"])
        # What the refund took back of a split (RefundRequest.split_returns) is returned with it.
        TradeSplit.objects.filter(payment=payment, status=SplitStatus.SUCCEEDED, returned_by="").update(
            returned_by=refund.refund_no
        )
        return True
    if observation.status == RefundState.FAILED and can_proceed(refund.fail):
        refund.fail(error_code=observation.provider_status[:64])
        refund.save(update_fields=["status", "error_code", "next_query_at", "updated_at"])
        if can_proceed(payment.refund_abort):
            payment.refund_abort()
            payment.save(update_fields=["status", "updated_at"])
        return True
    if observation.status == RefundState.PENDING and can_proceed(refund.mark_pending):
        refund.mark_pending(provider_refund_no=observation.provider_refund_no)
        refund.save(update_fields=["status", "provider_refund_no", "updated_at"])
    return False


def refunds_claim_due(*, limit: int = 100) -> list[str]:
    """Refunds not yet final whose next attempt is due, each moved one rung down the ladder."""
    statuses = [RefundStatus.REQUESTED, RefundStatus.PENDING, RefundStatus.UNKNOWN]
    return [r.refund_no for r in schedule.claim_due(Refund, statuses, limit=limit)]


def refund_view(*, refund_no: str) -> RefundView:
    refund = Refund.objects.select_related("payment").get(refund_no=refund_no)
    return _view(refund, refund.payment)


def refunds_for_reference(*, reference: str) -> list[RefundView]:
    """Every refund of every payment of `reference`, oldest first (the operators' order timeline)."""
    rows = Refund.objects.select_related("payment").filter(payment__reference=reference).order_by("pk")
    return [_view(r, r.payment) for r in rows]


def refund_for_reference(*, reference: str) -> RefundView | None:
    refund = Refund.objects.select_related("payment").filter(payment__reference=reference).order_by("-pk").first()
    return _view(refund, refund.payment) if refund else None
