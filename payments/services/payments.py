"""Payment use cases: start (intent before I/O), apply a verified observation, notify, query."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone
from django_fsm import ConcurrentTransition, can_proceed

from core import ids
from core.crypto import mask
from core.queries import one_or_none
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
    notification_account_hint_of,
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
from payments.models import (
    PAID_STATES,
    PAYABLE_STATES,
    ChannelAccount,
    Payment,
    PaymentStatus,
    ProviderNotification,
    Refund,
)
from payments.routing import RoutingRequest
from payments.services import channel_choice
from payments.services.adapters import adapter_for as _adapter
from payments.services.fees import fee_facts_of
from payments.services.inbound import inbound_of
from payments.services.refunds import refund_observation_apply

log = logging.getLogger(__name__)


# What _view reads: the live-payment lookup loads these only.
_VIEW_FIELDS = (
    "out_trade_no",
    "reference",
    "channel_code",
    "status",
    "amount_minor",
    "currency",
    "error_code",
    "decline_code",
    "method",
    "pay_url",
    "qr_content",
)


def _view(p: Payment) -> PaymentView:
    return PaymentView(
        out_trade_no=p.out_trade_no,
        reference=p.reference,
        channel_code=p.channel_code,
        status=PaymentStatus(p.status),
        amount=p.amount,
        error_code=p.error_code,
        decline_code=p.decline_code,
        method=p.method,
        pay_url=p.pay_url,
        qr_content=p.qr_content,
    )


def payment_options(
    *, currency: str, amount_minor: int | None = None, merchant_id: int | None = None, product_ref: str = ""
) -> list[PaymentOption]:
    """The payment methods a buyer can pick, in the order of the accounts' priority.

    With an amount, each method is offered only if routing would take this payment through it right now
    (amount limits, daily caps, rules, breakers, health): the picker never offers what would fail. Without
    one, every enabled account of the currency counts (is the currency served at all?).
    """
    if amount_minor is None:
        methods: dict[str, list[str]] = {}
        for c in channel_choice.candidates():
            if c.enabled and c.currency == currency:
                for method in METHODS:
                    if method in c.methods and c.code not in methods.setdefault(method, []):
                        methods[method].append(c.code)
        return [PaymentOption(method=m, channel_codes=tuple(codes)) for m, codes in methods.items() if codes]
    offered = sorted(
        {
            m
            for c in channel_choice.candidates()
            if c.enabled and c.currency == currency
            for m in c.methods
            if m in METHODS
        },
        key=METHODS.index,
    )
    requests = [
        RoutingRequest(
            amount_minor=amount_minor, currency=currency, method=m, merchant_id=merchant_id, product_ref=product_ref
        )
        for m in offered
    ]
    codes_by_id = {c.account_id: c.code for c in channel_choice.candidates()}
    options = []
    for method, decision in zip(offered, channel_choice.methods_rank(requests=requests), strict=True):
        codes = tuple(dict.fromkeys(codes_by_id[a] for a in decision.ranked))
        if codes:
            options.append(PaymentOption(method=method, channel_codes=codes))
    return options


def _live_payment(reference: str) -> Payment | None:
    """The payment a buyer of `reference` is (or may be) paying: paid first, then the shown one, then one in
    flight or in doubt. An UNKNOWN create blocks a new trade only where the channel can close it (the janitor
    does): elsewhere nobody ever received its QR or cashier, so nobody can pay it."""
    rows = list(
        Payment.objects.filter(reference=reference, status__in=[*PAYABLE_STATES, PaymentStatus.UNKNOWN, *PAID_STATES])
        .only(*_VIEW_FIELDS)
        .order_by("-pk")[:10]
    )
    rank = {PaymentStatus.PENDING: 1, PaymentStatus.CREATED: 2, PaymentStatus.UNKNOWN: 3}
    rows = [p for p in rows if p.status != PaymentStatus.UNKNOWN or _closable(p.channel_code)]
    return min(rows, key=lambda p: rank.get(PaymentStatus(p.status), 0)) if rows else None


def _closable(channel_code: str) -> bool:
    return _can(channel_code, Capability.CLOSE)


def _can(channel_code: str, capability: Capability) -> bool:
    adapter_cls = registry.get(channel_code)
    return adapter_cls is not None and capability in adapter_cls.capabilities


def payment_live_for_reference(*, reference: str) -> PaymentView | None:
    live = _live_payment(reference)
    return _view(live) if live else None


def payment_start(*, request: PaymentRequest, before_new: Callable[[], None] | None = None) -> PaymentView:
    """Reuse the reference's live payment, or route it: rank the accounts, then try them in order.

    `before_new` runs only when a new payment is about to be made (none is live), before routing: the caller's
    last word (risk), which may raise to refuse it. A reload showing the live payment does not run it.

    One payable trade per reference at a time (a partial unique constraint): a second tab that races the
    first one's create loses the insert and is shown the first one's payment, still being created.
    Each try writes its own intent (committed before any provider I/O, already on the janitor's schedule),
    calls the provider with no lock held, and applies the answer by a conditional UPDATE. A refusal or a
    connection failure moves on to the next ranked account, up to the operator's limit: nothing was shown to
    the buyer yet. A timeout is closed at the provider first; only a confirmed close lets the next try go.
    """
    live = _live_payment(request.reference)
    if live is not None:
        return _view(live)
    if before_new is not None:
        before_new()
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
            split_at_provider=request.split_at_provider,
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
        except _LostTheRace as race:
            return _view(race.live)
        except PaymentUnavailable as exc:
            last = exc
            log.warning("payment %s try %d on %s failed: %s", request.reference, attempt, account_id, exc.code)
            if exc.code == "create_unknown":
                break  # the trade could not be closed: it stays the live one until the janitor settles it
    assert last is not None
    raise last


class _LostTheRace(Exception):
    def __init__(self, live: Payment) -> None:
        self.live = live


def _payment_try(
    request: PaymentRequest, account: ChannelAccount, method: str, explained: dict, attempt: int
) -> PaymentView:
    now = timezone.now()
    try:
        with transaction.atomic():
            payment = Payment.objects.create(
                out_trade_no=ids.out_trade_no(),
                reference=request.reference,
                account=account,
                channel_code=account.code,
                method=method,
                amount_minor=request.amount.amount_minor,
                currency=request.amount.currency,
                next_query_at=schedule.next_query_at(attempts=0, created_at=now, now=now),
                routing=explained,
                attempt=attempt,
            )
    except IntegrityError:
        live = _live_payment(request.reference)
        if live is None:  # the other one failed in between: the constraint is free again
            raise PaymentUnavailable("create_raced", "another payment for this order was being created") from None
        raise _LostTheRace(live) from None
    order = CreateOrder(
        out_trade_no=payment.out_trade_no,
        amount=request.amount,
        subject=request.subject,
        notify_url=request.notify_url_for(account.code),
        return_url=request.return_url,
        client_ip=request.client_ip,
        method=method,
        expires_at=request.expires_at,
        split=account.owner_merchant_id is not None,
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
        # The provider may hold the trade (nobody got its QR). Close it there; only then may another be made.
        _payment_mark_unknown(payment.pk, exc.code)
        if not _closable(account.code) or _payment_close_in_doubt(payment.pk):
            raise PaymentUnavailable("create_timeout", str(exc)) from exc  # nobody can pay it: go on
        raise PaymentUnavailable("create_unknown", str(exc)) from exc
    channel_choice.create_outcome_record(account_id=account.pk, ok=True, latency_ms=_ms(started))
    payment.mark_pending(
        provider_trade_no=created.provider_trade_no,
        pay_url=created.pay_url,
        qr_content=created.qr_content,
    )
    try:
        # Conditional UPDATE ... WHERE status='created': a notify that won the race is never overwritten.
        with transaction.atomic():
            payment.save(update_fields=["status", "provider_trade_no", "pay_url", "qr_content", "updated_at"])
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


def _newly_declined(before: tuple[str, str], payment: Payment, observation: Observation) -> bool:
    """A failure report that changed what we hold (a new decline reason, or the payment newly failed): a replayed
    or re-queried decline is not a new one."""
    return observation.status == ObservedStatus.FAILED and (payment.status, payment.decline_code) != before


def observation_apply(*, payment: Payment, observation: Observation) -> Payment | None:
    """Move a locked payment by what the provider said; returns the payment that newly succeeded, if any.

    A provider's "paid" wins over whatever we concluded (failed, closed, in doubt). A success under another
    trade number than the one we hold is a separate collection: it gets its own row, never overwrites ours.
    A decline on a trade the buyer can still pay (another card, a retry) is recorded, not terminal.
    """
    if observation.status == ObservedStatus.SUCCEEDED:
        return _success_apply(payment, observation)
    if payment.status in PAID_STATES:
        return None  # monotonic: a success is never undone by a later close or failure report
    if observation.status == ObservedStatus.CLOSED and can_proceed(payment.close):
        payment.close()
        payment.save(update_fields=["status", "next_query_at", "updated_at"])
        channel_choice.final_outcome_record_on_commit(account_id=payment.account_id, ok=False, amount_minor=0)
    elif observation.status == ObservedStatus.FAILED and payment.status in PAYABLE_STATES:
        if observation.decline_code:
            payment.note_decline(decline_code=observation.decline_code)
        else:
            payment.error_code = observation.provider_status[:64]
        payment.save(update_fields=["error_code", "decline_code", "updated_at"])
    elif observation.status == ObservedStatus.FAILED and can_proceed(payment.fail):
        payment.fail(
            error_code=observation.decline_code or observation.provider_status[:64],
            decline_code=observation.decline_code,
        )
        payment.save(update_fields=["status", "error_code", "decline_code", "next_query_at", "updated_at"])
        channel_choice.final_outcome_record_on_commit(account_id=payment.account_id, ok=False, amount_minor=0)
    return None


def _success_apply(payment: Payment, observation: Observation) -> Payment | None:
    held = payment.provider_trade_no or ""
    trade_no = observation.provider_trade_no or held
    if held and trade_no != held:
        return _collection_record(payment, observation)
    if payment.status in PAID_STATES:
        return None  # the same collection, told again
    # The unique constraint already ties a trade number this payment holds to it alone: only a new one
    # needs the look (a failed UPDATE would abort the whole callback transaction instead of refusing it).
    if trade_no != held and _trade_no_taken(payment, trade_no):
        raise NotificationRejected("trade_no_reused", "provider trade number already paid another payment")
    payment.succeed(provider_trade_no=trade_no)
    payment.save(update_fields=["status", "provider_trade_no", "succeeded_at", "next_query_at", "updated_at"])
    channel_choice.final_outcome_record_on_commit(
        account_id=payment.account_id, ok=True, amount_minor=payment.amount_minor
    )
    return payment


def _trade_no_taken(payment: Payment, trade_no: str) -> bool:
    return (
        Payment.objects.filter(channel_code=payment.channel_code, provider_trade_no=trade_no)
        .exclude(pk=payment.pk)
        .exists()
    )


def _collection_record(payment: Payment, observation: Observation) -> Payment | None:
    """Money collected on our trade under a trade number we don't hold (a second intent, a provider retry):
    a sibling row SUCCEEDED with it, so it is visible and refundable, and our own payment is left as it was."""
    trade_no = observation.provider_trade_no
    known = Payment.objects.filter(channel_code=payment.channel_code, provider_trade_no=trade_no).first()
    if known is not None:
        if known.reference != payment.reference:
            raise NotificationRejected("trade_no_reused", "provider trade number already paid another payment")
        return None  # recorded before: a replay
    siblings = Payment.objects.filter(collected_on=payment).count()
    sibling = Payment(
        out_trade_no=f"{payment.out_trade_no}-{siblings + 2}",
        reference=payment.reference,
        account_id=payment.account_id,
        channel_code=payment.channel_code,
        amount_minor=observation.amount.amount_minor,
        currency=observation.amount.currency,
        status=PaymentStatus.SUCCEEDED,
        provider_trade_no=trade_no,
        succeeded_at=timezone.now(),
        collected_on=payment,
        error_code="separate_collection",
    )
    sibling.save()
    log.error("payment %s: a separate collection %s under trade %s", payment.out_trade_no, sibling, mask(trade_no))
    channel_choice.final_outcome_record_on_commit(
        account_id=payment.account_id, ok=True, amount_minor=sibling.amount_minor
    )
    return sibling


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
    inbound = inbound_of(params=params, body=body, headers=headers)
    flat = inbound.params
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
        if payment is None:
            # Locked in the global order (payment, then refund), and the refund read again under that lock: the
            # one read before it may be stale if the refund's own answer was applied meanwhile.
            payment = payment_qs_locked().select_related("account").get(pk=refund.payment_id)
            refund = Refund.objects.get(pk=refund.pk)
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
    seen_for = one_or_none(
        ProviderNotification.objects.filter(channel_code=channel_code, event_key=observation.event_key).values_list(
            "payment_id", flat=True
        )
    )
    if seen_for is not None:
        if seen_for != payment.pk:  # a provider event belongs to one payment: this one is stitched together
            raise NotificationRejected("event_reused", "this provider event was already applied to another payment")
        return NotificationOutcome(newly_succeeded=False, duplicate=True, **common)
    refund_final = declined = False
    newly: Payment | None = None
    if refund is not None:
        refund_final = refund_observation_apply(payment=payment, refund=refund, observation=observation)
        outcome_text = f"refund:{refund.status}"
    else:
        before = (payment.status, payment.decline_code)
        newly = observation_apply(payment=payment, observation=observation)
        declined = _newly_declined(before, payment, observation)
        outcome_text = "succeeded" if newly else payment.status
        if newly is not None and newly.pk != payment.pk:
            outcome_text = "separate_collection"
            common["out_trade_no"] = newly.out_trade_no
    ProviderNotification.objects.create(
        channel_code=channel_code,
        event_key=observation.event_key,
        payment=payment,
        params={k: v for k, v in flat.items() if k not in ("sign", "key", "signature")},
        outcome=outcome_text,
    )
    return NotificationOutcome(
        newly_succeeded=newly is not None,
        duplicate=False,
        refund_no=refund.refund_no if refund else "",
        refund_status=refund.status if refund else "",
        refund_newly_final=refund_final,
        fee_facts=fee_facts_of(newly) if newly is not None else None,
        newly_declined=declined,
        **common,
    )


def _payment_locked(channel_code: str, out_trade_no: str) -> Payment:
    payment = one_or_none(
        payment_qs_locked().select_related("account").filter(out_trade_no=out_trade_no, channel_code=channel_code)
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
    accounts = ChannelAccount.objects.filter(code=channel_code, enabled=True).order_by("pk")
    adapter_cls = registry.get(channel_code)
    hint = notification_account_hint_of(adapter_cls, inbound) if adapter_cls is not None else ""
    if hint:
        # The callback names the key it is signed with (WeChat's Wechatpay-Serial): only the accounts holding
        # that key try, so a forgery costs one signature check and is refused with that account's reason.
        candidates: Iterable[tuple[ChannelAccount, ChannelAdapter]] = [
            (account, adapter) for account in accounts if (adapter := _adapter(account)).account_hint() == hint
        ]
        if not candidates:
            raise NotificationRejected("unknown_serial", "no account of this channel holds the key it names")
    else:
        candidates = ((account, _adapter(account)) for account in accounts)
    rejected: NotificationRejected | None = None
    for account, adapter in candidates:
        try:
            return account, _verify(adapter, inbound, channel_code, "")
        except NotificationRejected as exc:
            rejected = exc
    raise rejected or NotificationRejected("unknown_order", "no account of this channel")


def _close_at_provider(p: Payment, reason: str) -> str:
    """Close one open trade at its provider (I/O, no lock held), then record it CLOSED with `reason`.

    "closed": done. "paid": the provider says it was paid meanwhile (the caller applies it like a late
    payment). "open": the channel cannot close, the close was not confirmed, or a callback settled it first.
    """
    if not _closable(p.channel_code):
        return "open"
    try:
        _adapter(p.account).close(p.out_trade_no, p.provider_trade_no or "")
    except Terminal as exc:
        if exc.code == "already_paid":
            return "paid"
        log.warning("close of %s (%s) refused: %s", p.out_trade_no, reason, exc.code)
        return "open"
    except (Retryable, Unknown) as exc:
        log.warning("close of %s (%s) not confirmed (%s); the janitor asks again", p.out_trade_no, reason, exc.code)
        return "open"
    with transaction.atomic():
        locked = payment_qs_locked().get(pk=p.pk)
        if locked.status == PaymentStatus.CLOSED:
            # The provider's own close callback (Stripe's session.expired) recorded it first; the why is ours.
            if locked.error_code != reason:
                locked.error_code = reason
                locked.save(update_fields=["error_code", "updated_at"])
            return "closed"
        if not can_proceed(locked.close):
            return "open"  # a callback settled it otherwise meanwhile (paid): not ours to close
        locked.close()
        locked.error_code = reason
        locked.save(update_fields=["status", "error_code", "next_query_at", "updated_at"])
    return "closed"


def payments_close_for_reference(*, reference: str) -> list[str]:
    """Close at the provider every payment of `reference` still open (its order lapsed), so nobody can pay a
    QR that no longer has stock behind it. I/O: call outside transactions.

    Returns the payments the provider says were paid meanwhile: the caller applies them like any late payment.
    A close that fails or times out leaves the payment to the janitor, whose query settles it either way.
    """
    open_payments = Payment.objects.select_related("account").filter(
        reference=reference, status__in=[PaymentStatus.PENDING, PaymentStatus.UNKNOWN]
    )
    # epay panels cannot close: their trades lapse there on their own.
    paid = [p.out_trade_no for p in open_payments if _close_at_provider(p, "closed_on_expiry") == "paid"]
    return paid


def payments_close_for_switch(*, reference: str) -> bool:
    """The buyer wants to pay another way: close the reference's open trade at the provider first (I/O; call
    outside transactions). True once nothing of it is payable any more; False while it may still be paid: a
    create in flight, a channel that cannot close (epay), a close not confirmed, or a provider that says paid
    (the janitor, or the caller's sync, applies that payment)."""
    if Payment.objects.filter(reference=reference, status=PaymentStatus.CREATED).exists():
        return False
    for p in Payment.objects.select_related("account").filter(
        reference=reference, status__in=[PaymentStatus.PENDING, PaymentStatus.UNKNOWN]
    ):
        if _close_at_provider(p, "switched_by_buyer") != "closed":
            return False
    return True


def payment_query(*, out_trade_no: str) -> Observation | None:
    """Ask the provider about a payment (I/O, call outside any transaction). None: nothing learnt this time.

    A query that times out or meets a 5xx records the error and leaves the status alone (the claim already
    put the payment on its next rung): the QR the buyer holds stays the live payment. A create in doubt that
    the provider reports unpaid or unknown is closed there, so that the buyer may be given a new trade.
    """
    payment = Payment.objects.select_related("account").get(out_trade_no=out_trade_no)
    if not _can(payment.channel_code, Capability.QUERY):
        return None  # only the callback can tell; the ladder runs out on its own
    started = time.perf_counter()
    try:
        observation = _adapter(payment.account).query(payment.wire_out_trade_no, payment.provider_trade_no or "")
        channel_choice.call_latency_record(account_id=payment.account_id, latency_ms=_ms(started))
    except (Unknown, Retryable, Terminal) as exc:
        log.warning("query of %s not answered (%s); the janitor asks again", out_trade_no, exc.code)
        Payment.objects.filter(pk=payment.pk).update(error_code=exc.code[:64], updated_at=timezone.now())
        return None
    if payment.status == PaymentStatus.UNKNOWN and (
        observation is None or observation.status == ObservedStatus.PENDING
    ):
        _payment_close_in_doubt(payment.pk)
    return observation


def _payment_close_in_doubt(payment_id: int) -> bool:
    """Close at the provider a trade whose create we never heard back from (I/O). True once it is CLOSED."""
    payment = Payment.objects.select_related("account").get(pk=payment_id)
    return payment.status == PaymentStatus.UNKNOWN and _close_at_provider(payment, "closed_in_doubt") == "closed"


def query_result_apply(*, out_trade_no: str, observation: Observation) -> QueryOutcome:
    """Apply a query result through the same path as a notify; runs inside the caller's transaction."""
    payment = payment_qs_locked().get(out_trade_no=out_trade_no)
    newly: Payment | None = None
    declined = False
    if observation.out_trade_no != payment.wire_out_trade_no or observation.amount != payment.amount:
        log.error("query for %s answered a different trade or amount; ignored", out_trade_no)
    else:
        before = (payment.status, payment.decline_code)
        newly = observation_apply(payment=payment, observation=observation)
        declined = _newly_declined(before, payment, observation)
    paid = newly or payment
    return QueryOutcome(
        out_trade_no=paid.out_trade_no,
        reference=payment.reference,
        amount=paid.amount,
        newly_succeeded=newly is not None,
        status=paid.status,
        fee_facts=fee_facts_of(newly) if newly is not None else None,
        newly_declined=declined,
    )


def payments_claim_due(*, limit: int = 200) -> list[str]:
    """Payments whose next query is due (created, pending or unknown), each moved one rung down the ladder."""
    statuses = [PaymentStatus.CREATED, PaymentStatus.PENDING, PaymentStatus.UNKNOWN]
    return [p.out_trade_no for p in schedule.claim_due(Payment, statuses, limit=limit)]


def payments_for_reference(*, reference: str) -> list[PaymentView]:
    """Every payment of `reference`, oldest first (operators see each try, decline and second payment)."""
    return [_view(p) for p in Payment.objects.select_related("account").filter(reference=reference).order_by("pk")]


def payment_for_reference(*, reference: str) -> PaymentView | None:
    p = Payment.objects.select_related("account").filter(reference=reference).order_by("-pk").first()
    return _view(p) if p else None


def payment_channels_for_references(*, references: list[str]) -> dict[str, str]:
    """Reference -> channel code of the payment that paid it (the first paid one), else of its latest try.

    One query for a whole admin page of orders.
    """
    paid: dict[str, str] = {}
    latest: dict[str, str] = {}
    rows = (
        Payment.objects.filter(reference__in=references)
        .order_by("pk")
        .values_list("reference", "channel_code", "status")
    )
    for reference, channel_code, status in rows:
        latest[reference] = channel_code
        if status in PAID_STATES:
            paid.setdefault(reference, channel_code)
    return {**latest, **paid}


def references_paid_more_than_once() -> QuerySet:
    """References (order numbers) that more than one payment paid: a subquery for the operators' filter."""
    return (
        Payment.objects.filter(status__in=PAID_STATES)
        .values("reference")
        .annotate(paid=Count("pk"))
        .filter(paid__gt=1)
        .values_list("reference", flat=True)
    )
