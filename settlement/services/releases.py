"""Releases: a sale's pending money and its reserve become available when their time comes.

Each sale's release row (SaleRelease, written with the sale) says when: pending at
`settlement.calendar.release_at(sold_at, cycle)` (working days from the operator's holiday file, shop time),
the reserve `reserve_days` calendar days after the sale. `releases_due(now)` (the beat task) posts one release
per due part, keys `release:<sale key>` and `reserve_release:<sale key>`, each in its own transaction: pending
(or reserve) debited, the merchant's owed balance paid first and the rest credited to available. A row another
worker or a refund holds is skipped and found again on the next run; a released or reversed part is never
released again.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import Q

from settlement.ledger import Line, ledger_accounts, ledger_post
from settlement.locks import sale_release_locked
from settlement.models import AccountKind, PartyKind, ReleaseState, SaleRelease, TransactionKind
from settlement.services.merchant_money import credit_parts, merchant_money_locked

log = logging.getLogger(__name__)


def _release(release: SaleRelease, *, key: str, account_kind: str, amount_minor: int) -> None:
    currency = release.currency
    held = ledger_accounts(currency=currency, specs=[(PartyKind.MERCHANT, release.merchant_id, account_kind)])
    source = next(iter(held.values()))
    available, owed = merchant_money_locked(merchant_id=release.merchant_id, currency=currency)
    lines = [Line(account_id=source.pk, amount_minor=amount_minor, currency=currency)] + [
        Line(account_id=a.pk, amount_minor=amount, currency=currency)
        for a, amount in credit_parts(available=available, owed=owed, amount_minor=amount_minor)
    ]
    ledger_post(
        key=key,
        kind=TransactionKind.RELEASE,
        reference=release.sale.reference,
        lines=lines,
        memo=f"{account_kind} of {release.sale.idempotency_key}",
        accounts={a.pk: a for a in (source, available, owed)},
        locked=(available, owed),
    )


def sale_release_post(*, sale_id: int, now: datetime) -> int:
    """Release what is due of one sale at `now`; returns how many postings (0, 1 or 2) it wrote."""
    posted = 0
    with transaction.atomic(durable=True):
        release = sale_release_locked(sale_id=sale_id, skip_locked=True)
        if release is None:
            return 0
        sale_key = release.sale.idempotency_key
        changed = []
        refunded = release.refunded_parts or {}  # what partial refunds took of each held part already
        if release.pending_state == ReleaseState.HELD and release.pending_due_at <= now:
            amount = release.pending_minor - refunded.get("pending", 0)
            if amount:  # partial refunds may have taken all of it
                _release(
                    release, key=f"release:{sale_key}", account_kind=AccountKind.MERCHANT_PENDING, amount_minor=amount
                )
                posted += 1
            release.pending_state = ReleaseState.RELEASED
            changed.append("pending_state")
        if release.reserve_state == ReleaseState.HELD and release.reserve_due_at <= now:
            amount = release.reserve_minor - refunded.get("reserve", 0)
            if amount:
                _release(
                    release,
                    key=f"reserve_release:{sale_key}",
                    account_kind=AccountKind.MERCHANT_RESERVE,
                    amount_minor=amount,
                )
                posted += 1
            release.reserve_state = ReleaseState.RELEASED
            changed.append("reserve_state")
        if changed:
            release.save(update_fields=changed)
    return posted


def releases_due(*, now: datetime, limit: int = 1000) -> int:
    """Post every release due at `now` (at most `limit` sales per run); returns how many postings."""
    due = (
        SaleRelease.objects.filter(
            Q(pending_state=ReleaseState.HELD, pending_due_at__lte=now)
            | Q(reserve_state=ReleaseState.HELD, reserve_due_at__lte=now)
        )
        .order_by("pk")
        .values_list("sale_id", flat=True)[:limit]
    )
    posted = 0
    for sale_id in list(due):
        try:
            posted += sale_release_post(sale_id=sale_id, now=now)
        except Exception:  # one bad row must not stop the others; it stays held and is retried next run
            log.exception("release of sale %s failed", sale_id)
    return posted
