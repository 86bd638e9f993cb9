"""Channel-side splitting: the provider splits the platform's share off a trade on a merchant's own account.

The shop asks for it once the trade is paid (`split_request`, in the paid transaction, with the sale's share);
after commit `split_execute` binds the platform as a receiver (idempotent at both providers) and sends the split
under its `split_no`, the provider's idempotency key. Both providers answer asynchronously: the result comes by
the provider's callback (`split_notification_apply`) or by the janitor's query (`splits_claim_due`), and either
is applied by `split_result_apply`. A split in doubt is queried first and resent under the same number only when
the provider does not know it. A refund of a split trade carries the split back (payments.services.refunds).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed

from core import ids
from core.audit import audit_record
from core.money import Money
from payments import schedule
from payments.channels import registry
from payments.channels.base import (
    Capability,
    NotificationInvalid,
    Retryable,
    SplitObservation,
    SplitReceiver,
    SplitRequest,
    SplitState,
    SplitToReturn,
    Terminal,
    Unknown,
)
from payments.contracts import (
    NotificationRejected,
    PaymentStatus,
    SplitRefused,
    SplitStatus,
    SplitView,
)
from payments.locks import split_qs_locked
from payments.models import ChannelAccount, Payment, TradeSplit
from payments.services.adapters import adapter_for
from payments.services.inbound import inbound_of

log = logging.getLogger(__name__)

LIVE = (SplitStatus.CREATED, SplitStatus.SUBMITTED, SplitStatus.UNKNOWN)
# A split the provider has not answered for: its task may have been lost, so the janitor looks after a minute.
FIRST_LOOK_SECONDS = 60


def _view(split: TradeSplit, *, newly_final: bool = False) -> SplitView:
    p = split.payment
    return SplitView(
        split_no=split.split_no,
        out_trade_no=p.out_trade_no,
        reference=p.reference,
        status=SplitStatus(split.status),
        amount=split.amount,
        merchant_account_id=p.account_id,
        receiver_account_id=split.receiver_id,
        provider_split_no=split.provider_split_no,
        failure_reason=split.failure_reason,
        newly_final=newly_final,
    )


def receiver_of(account: ChannelAccount, amount: Money, description: str = "") -> SplitReceiver:
    """The platform's account `account` as the receiver of `amount`, in the provider's words."""
    return SplitReceiver(
        account=account.receiver_id,
        account_type=account.receiver_type,
        name=account.receiver_name,
        amount=amount,
        description=description,
    )


def split_request(*, out_trade_no: str, amount: Money) -> SplitView:
    """Write the split of a paid trade on a merchant's own account (caller's transaction; the paid path's).
    A live split of that trade is returned as it is: a replayed paid path asks once."""
    payment = Payment.objects.select_related("account__split_to").get(out_trade_no=out_trade_no)
    account = payment.account
    if account.owner_merchant_id is None or account.split_to is None:
        raise SplitRefused("not_split_account", f"payment {out_trade_no} is not on a merchant's own account")
    if payment.status != PaymentStatus.SUCCEEDED:  # refunding or refunded: there is nothing left to split
        raise SplitRefused("not_paid", f"payment {out_trade_no} is not paid, or is being refunded")
    if amount.currency != payment.currency or not 0 < amount.amount_minor <= payment.amount_minor:
        raise SplitRefused("bad_amount", "a split is a positive part of the trade, in its currency")
    live = TradeSplit.objects.filter(payment=payment, status__in=LIVE + (SplitStatus.SUCCEEDED,)).first()
    if live is not None:
        return _view(live)
    split = TradeSplit.objects.create(
        split_no=ids.out_trade_no("S"),
        payment=payment,
        receiver=account.split_to,
        amount_minor=amount.amount_minor,
        currency=amount.currency,
        next_query_at=timezone.now() + timedelta(seconds=FIRST_LOOK_SECONDS),
    )
    return _view(split)


def _request(split: TradeSplit) -> SplitRequest:
    p = split.payment
    return SplitRequest(
        split_no=split.split_no,
        out_trade_no=p.wire_out_trade_no,
        provider_trade_no=p.provider_trade_no or "",
        receivers=(receiver_of(split.receiver, split.amount, f"platform fee {p.reference}"),),
        finish=True,  # the rest of the trade is the merchant's: released to it at once
        provider_split_no=split.provider_split_no,
    )


def _failed(split: TradeSplit, code: str, reason: str) -> SplitObservation:
    return SplitObservation(split.split_no, "", SplitState.FAILED, receivers=(), provider_status=code[:32] or reason)


def _send_counted(split: TradeSplit) -> bool:
    """Count a send before it goes (a crash after it leaves the split in doubt: queried first next time)."""
    with transaction.atomic():
        locked = split_qs_locked().get(pk=split.pk)
        if locked.status not in LIVE:
            return False
        locked.send_attempts += 1
        locked.save(update_fields=["send_attempts", "updated_at"])
    return True


def split_execute(*, split_no: str) -> SplitObservation | None:
    """Send the split, or ask what became of it (I/O: call outside transactions). None: nothing learned yet
    (not sent, or the answer was lost: the janitor asks again)."""
    split = TradeSplit.objects.select_related("payment__account", "receiver").get(split_no=split_no)
    if split.status not in LIVE:
        return None
    adapter = adapter_for(split.payment.account)
    if Capability.SPLIT not in adapter.capabilities:
        return _failed(split, "split_unsupported", f"channel {split.payment.channel_code} cannot split")
    request = _request(split)
    try:
        if split.status != SplitStatus.CREATED or split.send_attempts:
            seen = adapter.split_query(request)
            if seen is not None or split.status == SplitStatus.SUBMITTED:
                return seen  # accepted by the provider once: only ever asked about, never sent again
        if not _send_counted(split):
            return None
        adapter.split_bind(request.receivers[0])
        return adapter.split(request)
    except Terminal as exc:  # refused as sent: nothing moved
        return _failed(split, exc.code, str(exc))
    except Retryable as exc:
        log.warning("split %s not sent (%s); the janitor sends it under the same number", split_no, exc.code)
        return None
    except Unknown as exc:
        with transaction.atomic():
            locked = split_qs_locked().get(pk=split.pk)
            if can_proceed(locked.mark_unknown):
                locked.mark_unknown(provider_status=exc.code[:32])
                locked.save(update_fields=["status", "provider_status", "updated_at"])
        log.warning("split %s outcome unknown (%s); the janitor queries", split_no, exc.code)
        return None


def _ours(split: TradeSplit, seen: SplitObservation) -> bool:
    """The observation is about this split, and a success moved exactly our share to our receiver."""
    if seen.split_no != split.split_no:
        return False
    if seen.status != SplitState.SUCCEEDED:
        return True
    mine = [r for r in seen.receivers if r.account == split.receiver.receiver_id]
    return len(mine) == 1 and mine[0].amount == split.amount and mine[0].status == SplitState.SUCCEEDED


def split_result_apply(*, split_no: str, observation: SplitObservation) -> SplitView:
    """Move a split by what the provider said (caller's transaction). Monotonic: final stays final."""
    split = split_qs_locked().select_related("payment", "receiver").get(split_no=split_no)
    if not _ours(split, observation):
        log.error("split answer for %s names another split, receiver or amount; ignored", split_no)
        return _view(split)
    status = observation.status
    if status == SplitState.SUCCEEDED and can_proceed(split.succeed):
        split.succeed(provider_split_no=observation.provider_split_no, provider_status=observation.provider_status)
        split.save()
        return _view(split, newly_final=True)
    if status == SplitState.FAILED and can_proceed(split.fail):
        reasons = [r.failure_reason for r in observation.receivers if r.failure_reason]
        split.fail(reason=(reasons or [observation.provider_status])[0], provider_status=observation.provider_status)
        split.save()
        return _view(split, newly_final=True)
    if status == SplitState.PENDING and can_proceed(split.mark_submitted):
        split.mark_submitted(
            provider_split_no=observation.provider_split_no, provider_status=observation.provider_status
        )
        split.save()
    return _view(split)


def splits_claim_due(*, limit: int = 100) -> list[str]:
    """Splits not yet final whose next look is due, each moved one rung down the query ladder."""
    return [s.split_no for s in schedule.claim_due(TradeSplit, list(LIVE), limit=limit)]


def split_retry(*, split_no: str, actor: str) -> SplitView:
    """An operator splits a FAILED split's trade again, under a new number; the janitor sends it within a minute
    (FIRST_LOOK_SECONDS). Audited."""
    with transaction.atomic():
        failed = split_qs_locked().select_related("payment").get(split_no=split_no)
        if failed.status != SplitStatus.FAILED:
            raise SplitRefused("not_failed", "only a failed split is tried again")
        again = split_request(out_trade_no=failed.payment.out_trade_no, amount=failed.amount)
        audit_record(actor=actor, action="split_retry", target=split_no, new_split_no=again.split_no)
    return again


def split_view(*, split_no: str) -> SplitView:
    return _view(TradeSplit.objects.select_related("payment").get(split_no=split_no))


def split_notification_is(
    *, channel_code: str, params: Mapping[str, list[str]], body: bytes, headers: Mapping[str, str] | None = None
) -> bool:
    """Whether a callback to /notify/<channel_code>/ is a split result rather than a payment or refund one."""
    adapter_cls = registry.get(channel_code)
    check = getattr(adapter_cls, "is_split_notification", None)
    return bool(check and check(inbound_of(params=params, body=body, headers=headers)))


def split_notification_apply(
    *, channel_code: str, params: Mapping[str, list[str]], body: bytes, headers: Mapping[str, str] | None = None
) -> tuple[SplitView, int, str, str]:
    """Verify a split callback with the merchant-owned account it names and apply it (caller's transaction).
    Returns the split and the channel's ACK (status, body, content type). A replay applies nothing twice."""
    adapter_cls = registry.get(channel_code)
    if adapter_cls is None:
        raise NotificationRejected("unknown_channel", "no such channel")
    inbound = inbound_of(params=params, body=body, headers=headers)
    accounts = ChannelAccount.objects.filter(code=channel_code, owner_merchant_id__isnull=False).order_by("pk")
    rejected = NotificationRejected("unknown_split", "no merchant-owned account of this channel")
    for account in accounts:
        try:
            seen = adapter_for(account).verify_split_notification(inbound)
        except NotificationInvalid as exc:
            rejected = NotificationRejected(exc.code, exc.message)
            continue
        split = TradeSplit.objects.filter(split_no=seen.split_no, payment__account=account).first()
        if split is None:
            raise NotificationRejected("unknown_split", "no such split on this account")
        view = split_result_apply(split_no=split.split_no, observation=seen)
        ack = adapter_cls.ack(True)
        return view, ack.status, ack.body, ack.content_type
    raise rejected


def split_to_return(payment: Payment) -> tuple[SplitToReturn, ...]:
    """What a full refund of `payment` takes back: its succeeded split not yet returned."""
    done = payment.splits.select_related("receiver").filter(status=SplitStatus.SUCCEEDED, returned_by="")
    return tuple(
        SplitToReturn(split.split_no, split.provider_split_no, receiver_of(split.receiver, split.amount, "refund"))
        for split in done
    )
