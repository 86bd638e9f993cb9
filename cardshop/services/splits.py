"""Channel-side splitting, across apps: the provider splits the platform's share off a sale on the merchant's own
account (payments speaks to the provider and keeps the split's state; settlement books it as the sale's
settlement). Push (the provider's callback) and pull (the janitor's query) share `_split_result_apply`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from django.db import transaction

from cardshop import jobs
from cardshop.models import Order
from cardshop.services.events import order_event_add
from core.money import Money
from payments import facade as payments
from payments.contracts import SplitRefused, SplitStatus, SplitView
from settlement import facade as settlement
from settlement.contracts import SettlementError

log = logging.getLogger(__name__)


def split_at_provider_request(order: Order, *, out_trade_no: str) -> None:
    """In the paid transaction, after the sale is booked: ask for the platform's share, sent after commit. A
    split that cannot be asked for is logged and marked on the order: the money is the merchant's, in its own
    account, and an operator splits it by hand (the sale stays "at the provider" in the ledger)."""
    share = settlement.sale_provider_share(out_trade_no=out_trade_no)
    if not share:
        return
    try:
        view = payments.split_request(out_trade_no=out_trade_no, amount=Money(share, order.amount.currency))
    except SplitRefused as exc:
        log.error("order %s: the split of %s was refused (%s)", order.order_no, out_trade_no, exc.code)
        order_event_add(order=order, kind="split_refused", out_trade_no=out_trade_no, code=exc.code)
        return
    if view.status == SplitStatus.CREATED:
        jobs.split_submit(view.split_no)


def _split_result_apply(view: SplitView, *, source: str) -> None:
    """A split just became final (caller's transaction): book it, and say so on the order."""
    order = Order.objects.get(order_no=view.reference)
    if view.status != SplitStatus.SUCCEEDED:
        order_event_add(order=order, kind="split_failed", split_no=view.split_no, reason=view.failure_reason)
        return
    try:
        settlement.split_post(
            out_trade_no=view.out_trade_no,
            split_no=view.split_no,
            amount_minor=view.amount.amount_minor,
            currency=view.amount.currency,
            receiver_account_id=view.receiver_account_id,
        )
    except SettlementError as exc:  # the provider moved the money: the ledger must say so, an operator fixes it
        log.exception("split %s of order %s could not be booked", view.split_no, order.order_no)
        order_event_add(order=order, kind="ledger_unbooked", split_no=view.split_no, code=exc.code)
        return
    order_event_add(order=order, kind="split_succeeded", source=source, split_no=view.split_no)


def split_sync(*, split_no: str, source: str = "task") -> str:
    """Send or query one split (no lock held during I/O), then apply what the provider said."""
    observation = payments.split_execute(split_no=split_no)
    if observation is None:
        return payments.split_view(split_no=split_no).status
    with transaction.atomic(durable=True):
        view = payments.split_result_apply(split_no=split_no, observation=observation)
        if view.newly_final:
            _split_result_apply(view, source=source)
    return view.status


def splits_sync_due() -> int:
    """The janitor: splits whose answer is due, each sent or asked about on its ladder."""
    done = 0
    for split_no in payments.splits_claim_due():
        try:
            done += split_sync(split_no=split_no, source="janitor") in (SplitStatus.SUCCEEDED, SplitStatus.FAILED)
        except Exception:  # one provider error must not stop the sweep; the ladder retries
            log.exception("split sync of %s failed", split_no)
    return done


def split_notification_handle(
    *, channel_code: str, params: Mapping[str, list[str]], body: bytes, headers: Mapping[str, str] | None = None
) -> tuple[int, str, str]:
    """A provider's split callback: verify, apply, book; one durable transaction. The channel's ACK back."""
    with transaction.atomic(durable=True):
        view, *ack = payments.split_notification_apply(
            channel_code=channel_code, params=params, body=body, headers=headers
        )
        if view.newly_final:
            _split_result_apply(view, source="notify")
    return ack[0], ack[1], ack[2]
