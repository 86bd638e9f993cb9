"""Payment use cases: start (intent before I/O), apply a verified observation, notify, query."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from django.db import transaction
from django.utils import timezone
from django_fsm import ConcurrentTransition, can_proceed

from core import ids
from core.crypto import mask
from payments import gateways, schedule
from payments.channels import registry
from payments.channels.base import (
    METHODS,
    Capability,
    ChannelAdapter,
    CreateOrder,
    Inbound,
    NotificationInvalid,
    Observation,
    ObservedStatus,
    RefundObservation,
    Retryable,
    Terminal,
    Unknown,
)
from payments.contracts import (
    NotificationOutcome,
    NotificationRejected,
    PaymentOption,
    PaymentRequest,
    PaymentUnavailable,
    PaymentView,
    QueryOutcome,
)
from payments.locks import payment_qs_locked
from payments.models import PAID_STATES, ChannelAccount, Payment, PaymentStatus, ProviderNotification, Refund
from payments.routing import RoutingRequest
from payments.services import channel_choice
from payments.services.adapters import adapter_for as _adapter
from payments.services.refunds import refund_observation_apply

log = logging.getLogger(__name__)


def _view(p: Payment) -> PaymentView:
    return PaymentView(
        out_trade_no=p.out_trade_no,
        reference=p.reference,
        channel_code=p.channel_code,
        status=p.status,
        amount=p.amount,
        pay_url=p.pay_url,
        qr_content=p.qr_content,
        client_secret=p.client_secret,
        publishable_key=p.account.credentials_dict().get("publishable_key", "") if p.client_secret else "",
    )


def payment_options(*, currency: str) -> list[PaymentOption]:
    """The payment methods a buyer can pick for this currency, in the order of the accounts' priority."""
    methods: dict[str, list[str]] = {}
    for c in channel_choice.candidates():
        if c.enabled and c.currency == currency:
            for method in METHODS:
                if method in c.methods and c.code not in methods.setdefault(method, []):
                    methods[method].append(c.code)
    return [PaymentOption(method=m, channel_codes=tuple(codes)) for m, codes in methods.items() if codes]


def payment_start(*, request: PaymentRequest) -> PaymentView:
    """Reuse the reference's live payment, or route it: rank the accounts, then try them in order.

    Each try writes its own intent (committed before any provider I/O, already on the janitor's schedule),
    calls the provider with no lock held, and applies the answer by a conditional UPDATE. A refusal, a
    connection failure or a timeout moves on to the next ranked account, up to the operator's limit: nothing
    was shown to the buyer yet, so nothing is switched behind their back. A timed-out try stays UNKNOWN for
    the janitor (the provider may hold a trade nobody can pay: no QR ever reached a buyer).
    """
    live = (
        Payment.objects.select_related("account")
        .filter(reference=request.reference, status__in=[PaymentStatus.PENDING, *PAID_STATES])
        .order_by("-pk")
        .first()
    )
    if live is not None:
        return _view(live)
    method = request.method
    if request.channel_code:
        adapter_cls = registry.get(request.channel_code)
        if adapter_cls is not None and method not in adapter_cls.methods:
            method = sorted(adapter_cls.methods)[0]  # a pinned channel takes its own method
    decision = channel_choice.channels_rank(
        request=RoutingRequest(
            amount_minor=request.amount.amount_minor,
            currency=request.amount.currency,
            method=method,
            merchant_id=request.merchant_id,
            product_ref=request.product_ref,
        ),
        only_code=request.channel_code,
    )
    if not decision.ranked:
        raise PaymentUnavailable("no_channel", "no enabled channel takes this payment")
    explained = decision.explain()
    accounts = ChannelAccount.objects.in_bulk(list(decision.ranked))
    last: Exception | None = None
    for attempt, account_id in enumerate(decision.ranked, start=1):
        try:
            return _payment_try(request, accounts[account_id], method, explained, attempt)
        except PaymentUnavailable as exc:
            last = exc
            log.warning("payment %s try %d on %s failed: %s", request.reference, attempt, account_id, exc.code)
    assert last is not None
    raise last


def _payment_try(
    request: PaymentRequest, account: ChannelAccount, method: str, explained: dict, attempt: int
) -> PaymentView:
    now = timezone.now()
    payment = Payment.objects.create(
        out_trade_no=ids.out_trade_no(),
        reference=request.reference,
        account=account,
        channel_code=account.code,
        amount_minor=request.amount.amount_minor,
        currency=request.amount.currency,
        next_query_at=schedule.next_query_at(attempts=0, created_at=now, now=now),
        routing=explained,
        attempt=attempt,
    )
    order = CreateOrder(
        out_trade_no=payment.out_trade_no,
        amount=request.amount,
        subject=request.subject,
        notify_url=request.notify_url_for(account.code),
        return_url=request.return_url,
        client_ip=request.client_ip,
        method=method,
        expires_at=request.expires_at,
    )
    started = time.perf_counter()
    try:
        created = _adapter(account).create(order)
        links = (created.pay_url, created.qr_content)
        if not all(gateways.provider_link_ok(code=account.code, base_url=account.base_url, link=u) for u in links):
            raise Terminal("the provider sent a link outside the account's gateway", code="foreign_link")
    except (Retryable, Terminal) as exc:
        channel_choice.create_outcome_record(account_id=account.pk, ok=False, latency_ms=_ms(started))
        _payment_fail(payment.pk, exc.code)
        raise PaymentUnavailable("create_failed", str(exc)) from exc
    except Unknown as exc:
        channel_choice.create_outcome_record(account_id=account.pk, ok=False, latency_ms=_ms(started))
        # The provider may have the trade: the pull path resolves it; never create blindly again on this one.
        _payment_mark_unknown(payment.pk, exc.code)
        raise PaymentUnavailable("create_unknown", str(exc)) from exc
    channel_choice.create_outcome_record(account_id=account.pk, ok=True, latency_ms=_ms(started))
    payment.mark_pending(
        provider_trade_no=created.provider_trade_no,
        pay_url=created.pay_url,
        qr_content=created.qr_content,
        client_secret=created.client_secret,
    )
    try:
        # Conditional UPDATE ... WHERE status='created': a notify that won the race is never overwritten.
        with transaction.atomic():
            payment.save(
                update_fields=["status", "provider_trade_no", "pay_url", "qr_content", "client_secret", "updated_at"]
            )
    except ConcurrentTransition:
        payment = Payment.objects.select_related("account").get(pk=payment.pk)
    return _view(payment)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _payment_fail(payment_id: int, code: str) -> None:
    with transaction.atomic():
        payment = payment_qs_locked().get(pk=payment_id)
        if can_proceed(payment.fail):
            payment.fail(error_code=code)
            payment.save(update_fields=["status", "error_code", "updated_at"])


def _payment_mark_unknown(payment_id: int, code: str) -> None:
    with transaction.atomic():
        payment = payment_qs_locked().get(pk=payment_id)
        if can_proceed(payment.mark_unknown):
            payment.mark_unknown(error_code=code)
            payment.save(update_fields=["status", "error_code", "updated_at"])


def observation_apply(*, payment: Payment, observation: Observation) -> bool:
    """Move a locked payment by what the provider said; returns True only when it newly succeeded.

    Monotonic: a success is never undone by a later close or failure report.
    """
    if observation.status == ObservedStatus.SUCCEEDED:
        if payment.status in PAID_STATES:
            if payment.provider_trade_no != observation.provider_trade_no:
                log.error("payment %s succeeded again under another trade no", payment.out_trade_no)
            return False
        if not can_proceed(payment.succeed):
            log.error("payment %s reported paid while %s", payment.out_trade_no, payment.status)
            return False
        # The unique constraint already ties a trade number this payment holds to it alone: only a new one
        # needs the look (a failed UPDATE would abort the whole callback transaction instead of refusing it).
        reused = (
            payment.provider_trade_no != observation.provider_trade_no
            and Payment.objects.filter(
                channel_code=payment.channel_code, provider_trade_no=observation.provider_trade_no
            )
            .exclude(pk=payment.pk)
            .exists()
        )
        if reused:
            raise NotificationRejected("trade_no_reused", "provider trade number already paid another payment")
        payment.succeed(provider_trade_no=observation.provider_trade_no)
        payment.save(update_fields=["status", "provider_trade_no", "succeeded_at", "next_query_at", "updated_at"])
        channel_choice.final_outcome_record_on_commit(
            account_id=payment.account_id, ok=True, amount_minor=payment.amount_minor
        )
        return True
    if observation.status == ObservedStatus.CLOSED and can_proceed(payment.close):
        payment.close()
        payment.save(update_fields=["status", "next_query_at", "updated_at"])
        channel_choice.final_outcome_record_on_commit(account_id=payment.account_id, ok=False, amount_minor=0)
    elif observation.status == ObservedStatus.FAILED and can_proceed(payment.fail):
        payment.fail(error_code=observation.provider_status[:64])
        payment.save(update_fields=["status", "error_code", "next_query_at", "updated_at"])
        channel_choice.final_outcome_record_on_commit(account_id=payment.account_id, ok=False, amount_minor=0)
    return False


def _single_valued(params: Mapping[str, list[str]]) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, values in params.items():
        if len(values) != 1:
            raise NotificationRejected("repeated_parameter", f"parameter {key[:40]!r} must appear once")
        flat[key] = values[0]
    return flat


def notification_apply(
    *, channel_code: str, params: Mapping[str, list[str]], body: bytes, headers: Mapping[str, str] | None = None
) -> NotificationOutcome:
    """Verify a provider callback against the account that created the payment, then apply it once.

    Must run inside the caller's transaction; every check happens before the first write. The payment
    row is locked as it is read (a lock is no change, and it saves a second read on the hottest path):
    a forged callback holds it only for the microseconds its verification takes.
    """
    adapter_cls = registry.get(channel_code)
    if adapter_cls is None:
        raise NotificationRejected("unknown_channel", "no such channel")
    flat = _single_valued(params)
    inbound = Inbound(params=flat, body=body, headers={k.lower(): v for k, v in (headers or {}).items()})
    out_trade_no = adapter_cls.notification_reference(inbound)
    payment: Payment | None = None
    if out_trade_no:
        payment = _payment_locked(channel_code, out_trade_no)
        account = payment.account
        observation = _verify(_adapter(account), inbound, channel_code, out_trade_no)
    else:
        # The protocol hides the reference (WeChat encrypts it): the account whose keys verify is the sender.
        account, observation = _verify_with_any_account(channel_code, inbound)

    refund: Refund | None = None
    if isinstance(observation, RefundObservation):
        refund = Refund.objects.filter(refund_no=observation.refund_no).first()
        if refund is None or (payment is not None and refund.payment_id != payment.pk):
            raise NotificationRejected("unknown_refund", "no such refund for this payment")
        payment = payment or payment_qs_locked().select_related("account").get(pk=refund.payment_id)
    elif payment is None:
        payment = _payment_locked(channel_code, observation.out_trade_no)
    elif observation.out_trade_no != payment.out_trade_no:
        raise NotificationRejected("unknown_order", "notification names another payment")
    if payment.account_id != account.pk:
        raise NotificationRejected("wrong_account", "notification verified by another channel account")
    expected = refund.amount if refund is not None else payment.amount
    if observation.amount != expected:
        raise NotificationRejected("wrong_amount", "amount or currency differs from ours")

    ack = adapter_cls.ack(True)
    common = {
        "ack_status": ack.status,
        "ack_body": ack.body,
        "ack_content_type": ack.content_type,
        "out_trade_no": payment.out_trade_no,
        "reference": payment.reference,
        "amount": payment.amount,
    }
    seen_for = (
        ProviderNotification.objects.filter(channel_code=channel_code, event_key=observation.event_key)
        .values_list("payment_id", flat=True)
        .first()
    )
    if seen_for is not None:
        if seen_for != payment.pk:  # a provider event belongs to one payment: this one is stitched together
            raise NotificationRejected("event_reused", "this provider event was already applied to another payment")
        return NotificationOutcome(newly_succeeded=False, duplicate=True, **common)
    newly = refund_final = False
    if refund is not None:
        refund_final = refund_observation_apply(payment=payment, refund=refund, observation=observation)
        outcome_text = f"refund:{refund.status}"
    else:
        newly = observation_apply(payment=payment, observation=observation)
        outcome_text = "succeeded" if newly else payment.status
    ProviderNotification.objects.create(
        channel_code=channel_code,
        event_key=observation.event_key,
        payment=payment,
        params={k: v for k, v in flat.items() if k not in ("sign", "key", "signature")},
        outcome=outcome_text,
    )
    return NotificationOutcome(
        newly_succeeded=newly,
        duplicate=False,
        refund_no=refund.refund_no if refund else "",
        refund_status=refund.status if refund else "",
        refund_newly_final=refund_final,
        **common,
    )


def _payment_locked(channel_code: str, out_trade_no: str) -> Payment:
    payment = (
        payment_qs_locked()
        .select_related("account")
        .filter(out_trade_no=out_trade_no, channel_code=channel_code)
        .first()
    )
    if not out_trade_no or payment is None:
        raise NotificationRejected("unknown_order", "no payment with this out_trade_no on this channel")
    return payment


def _verify(
    adapter: ChannelAdapter, inbound: Inbound, channel_code: str, reference: str
) -> Observation | RefundObservation:
    try:
        return adapter.verify_notification(inbound)
    except NotificationInvalid as exc:
        log.warning(
            "rejected %s notify for %s: %s (sign %s)",
            channel_code,
            reference or "?",
            exc.code,
            mask(inbound.params.get("sign") or inbound.headers.get("wechatpay-signature")),
        )
        raise NotificationRejected(exc.code, exc.message) from exc


def _verify_with_any_account(
    channel_code: str, inbound: Inbound
) -> tuple[ChannelAccount, Observation | RefundObservation]:
    accounts = list(ChannelAccount.objects.filter(code=channel_code, enabled=True).order_by("pk"))
    rejected: NotificationRejected | None = None
    for account in accounts:
        try:
            return account, _verify(_adapter(account), inbound, channel_code, "")
        except NotificationRejected as exc:
            rejected = exc
    raise rejected or NotificationRejected("unknown_order", "no account of this channel")


def payments_close_for_reference(*, reference: str) -> list[str]:
    """Close at the provider every payment of `reference` still open (its order lapsed), so nobody can pay a
    QR that no longer has stock behind it. I/O: call outside transactions.

    Returns the payments the provider says were paid meanwhile: the caller applies them like any late payment.
    A close that fails or times out leaves the payment to the janitor, whose query settles it either way.
    """
    paid: list[str] = []
    open_payments = Payment.objects.select_related("account").filter(
        reference=reference, status__in=[PaymentStatus.PENDING, PaymentStatus.UNKNOWN]
    )
    for p in open_payments:
        adapter_cls = registry.get(p.channel_code)
        if adapter_cls is None or Capability.CLOSE not in adapter_cls.capabilities:
            continue  # epay panels cannot close: the trade lapses there on its own
        try:
            _adapter(p.account).close(p.out_trade_no, p.provider_trade_no or "")
        except Terminal as exc:
            if exc.code == "already_paid":
                paid.append(p.out_trade_no)
            else:
                log.warning("close of %s refused: %s", p.out_trade_no, exc.code)
            continue
        except (Retryable, Unknown) as exc:
            log.warning("close of %s not confirmed (%s); the janitor asks again", p.out_trade_no, exc.code)
            continue
        with transaction.atomic():
            locked = payment_qs_locked().get(pk=p.pk)
            if can_proceed(locked.close):
                locked.close()
                locked.error_code = "closed_on_expiry"
                locked.save(update_fields=["status", "error_code", "next_query_at", "updated_at"])
    return paid


def payment_query(*, out_trade_no: str) -> Observation | None:
    """Ask the provider about a payment (I/O, call outside any transaction). None: nothing learnt this time.

    A query that times out or meets a 5xx leaves the payment UNKNOWN (never failed); the janitor asks again.
    """
    payment = Payment.objects.select_related("account").get(out_trade_no=out_trade_no)
    started = time.perf_counter()
    try:
        observation = _adapter(payment.account).query(out_trade_no, payment.provider_trade_no or "")
        channel_choice.call_latency_record(account_id=payment.account_id, latency_ms=_ms(started))
        return observation
    except Unknown as exc:
        log.warning("query of %s in doubt (%s); the janitor asks again", out_trade_no, exc.code)
        _payment_mark_unknown(payment.pk, exc.code)
    except (Retryable, Terminal) as exc:
        log.warning("query of %s not answered (%s); the janitor asks again", out_trade_no, exc.code)
    return None


def query_result_apply(*, out_trade_no: str, observation: Observation) -> QueryOutcome:
    """Apply a query result through the same path as a notify; runs inside the caller's transaction."""
    payment = payment_qs_locked().get(out_trade_no=out_trade_no)
    if observation.out_trade_no != out_trade_no or observation.amount != payment.amount:
        log.error("query for %s answered a different trade or amount; ignored", out_trade_no)
        newly = False
    else:
        newly = observation_apply(payment=payment, observation=observation)
    return QueryOutcome(
        out_trade_no=out_trade_no,
        reference=payment.reference,
        amount=payment.amount,
        newly_succeeded=newly,
        status=payment.status,
    )


def payments_claim_due(*, limit: int = 200) -> list[str]:
    """Payments whose next query is due (created, pending or unknown), each moved one rung down the ladder."""
    statuses = [PaymentStatus.CREATED, PaymentStatus.PENDING, PaymentStatus.UNKNOWN]
    return [p.out_trade_no for p in schedule.claim_due(Payment, statuses, limit=limit)]


def payment_for_reference(*, reference: str) -> PaymentView | None:
    p = Payment.objects.select_related("account").filter(reference=reference).order_by("-pk").first()
    return _view(p) if p else None


def payments_succeeded_for_reference(*, reference: str) -> int:
    return Payment.objects.filter(reference=reference, status__in=PAID_STATES).count()
