"""Read-only figures for the operators' dashboard: payment outcomes per channel account, money collected per
method, refunds still open. No state changes; each function is one database query (plus, for the outcomes, one
read of the breaker store)."""

from __future__ import annotations

import logging
import time
from datetime import datetime

import redis
from django.db.models import Count, FilteredRelation, Q, Sum, Window

from core.money import Money
from payments import breaker
from payments.contracts import ChannelOutcomes, MethodTotal, OpenRefunds, RefundView
from payments.models import PAID_STATES, ChannelAccount, Payment, PaymentStatus, Refund, RefundStatus
from payments.services.channel_choice import breaker_config

log = logging.getLogger(__name__)

OPEN_REFUND_STATES = (RefundStatus.REQUESTED, RefundStatus.PENDING, RefundStatus.UNKNOWN)
_UNDECIDED = (PaymentStatus.CREATED, PaymentStatus.PENDING, PaymentStatus.UNKNOWN)


def payment_outcomes_by_channel(*, since: datetime, until: datetime) -> list[ChannelOutcomes]:
    """Every channel account (routing order), with the payments created through it in since <= t <= until.

    A separate collection (money a provider took on another payment's trade) is not an attempt: it is left out.
    One query, plus one read of the breakers (Redis, or this process's memory without REDIS_URL).
    """
    # The window goes into the join: only the window's payments are joined and counted, not every one ever made.
    made = FilteredRelation(
        "payments",
        condition=Q(
            payments__created_at__gte=since,
            payments__created_at__lte=until,
            payments__collected_on__isnull=True,
        ),
    )
    rows = list(
        ChannelAccount.objects.order_by("priority", "pk")
        .annotate(made=made)
        .annotate(
            attempts=Count("made"),
            succeeded=Count("made", filter=Q(made__status__in=PAID_STATES)),
            failed=Count("made", filter=Q(made__status=PaymentStatus.FAILED)),
            closed=Count("made", filter=Q(made__status=PaymentStatus.CLOSED)),
            undecided=Count("made", filter=Q(made__status__in=_UNDECIDED)),
        )
        .values("pk", "code", "name", "enabled", "attempts", "succeeded", "failed", "closed", "undecided")
    )
    states = _breaker_states([r["pk"] for r in rows])
    return [
        ChannelOutcomes(
            account_id=r["pk"],
            channel_code=r["code"],
            account_name=r["name"],
            enabled=r["enabled"],
            breaker_state=states.get(r["pk"], ""),
            attempts=r["attempts"],
            succeeded=r["succeeded"],
            failed=r["failed"],
            closed=r["closed"],
            open=r["undecided"],
        )
        for r in rows
    ]


def _breaker_states(ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    try:
        return {i: str(s) for i, s in breaker.breaker_store().states(ids, time.time(), breaker_config()).items()}
    except redis.RedisError:  # the figures still render; the breaker column reads "unknown"
        log.exception("could not read the breakers for the dashboard")
        return {}


def payment_totals_by_method(*, since: datetime, until: datetime) -> list[MethodTotal]:
    """Payments that collected money (succeeded, also if refunded since) with since <= succeeded_at <= until, per
    method and currency, by method then currency. Separate collections are left out (they are refunded or held
    for an operator, not sales). One query."""
    rows = (
        Payment.objects.filter(
            status__in=PAID_STATES,
            succeeded_at__gte=since,
            succeeded_at__lte=until,
            collected_on__isnull=True,
        )
        .order_by()
        .values("method", "currency")
        .annotate(n=Count("pk"), total=Sum("amount_minor"))
        .order_by("method", "currency")
    )
    return [
        MethodTotal(method=r["method"], payments=r["n"], amount=Money(int(r["total"]), r["currency"])) for r in rows
    ]


def refunds_open(*, limit: int) -> OpenRefunds:
    """Refunds not final yet, oldest first, at most `limit`, and how many there are. One query (the total rides
    on each row as a window count)."""
    rows = list(
        Refund.objects.filter(status__in=OPEN_REFUND_STATES)
        .select_related("payment")
        .annotate(total=Window(expression=Count("pk")))
        .order_by("created_at", "pk")[:limit]
    )
    return OpenRefunds(
        rows=tuple(
            RefundView(
                refund_no=r.refund_no,
                channel_code=r.payment.channel_code,
                out_trade_no=r.payment.out_trade_no,
                reference=r.payment.reference,
                status=r.status,
                amount=r.amount,
                reason=r.reason,
                requested_by=r.requested_by,
            )
            for r in rows
        ),
        total=rows[0].total if rows else 0,
    )
