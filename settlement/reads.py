"""Reads and the nightly check that other apps reach through settlement.facade (re-exported at its end).

Frozen dataclasses out (settlement.contracts), no ORM objects. Must not import cardshop.
"""

from __future__ import annotations

from settlement.checks import ledger_check_run
from settlement.contracts import PostingLineView, PostingView
from settlement.models import LedgerEntry, LedgerTransaction


def postings_for_reference(*, reference: str) -> list[PostingView]:
    """Every ledger transaction booked for `reference` (an order number), oldest first, with all its lines.

    Two queries whatever the number of transactions: the transactions, then their lines with their accounts.
    """
    txns = list(LedgerTransaction.objects.filter(reference=reference).order_by("pk"))
    lines: dict[int, list[PostingLineView]] = {t.pk: [] for t in txns}
    for e in LedgerEntry.objects.filter(transaction_id__in=list(lines)).select_related("account").order_by("pk"):
        lines[e.transaction_id].append(
            PostingLineView(
                party_kind=e.account.party_kind,
                party_id=e.account.party_id,
                account_kind=e.account.kind,
                amount_minor=e.amount_minor,
                currency=e.currency,
            )
        )
    return [
        PostingView(
            transaction_id=t.pk,
            key=t.idempotency_key,
            kind=t.kind,
            reference=t.reference,
            created_at=t.created_at,
            lines=tuple(lines[t.pk]),
            replayed=False,
        )
        for t in txns
    ]


def ledger_check_nightly() -> int:
    """Run and store the invariant check (settlement.checks); the number of problems found (0 when clean)."""
    return ledger_check_run().problem_count


__all__ = ["ledger_check_nightly", "postings_for_reference"]
