"""Reads and the nightly check that other apps reach through settlement.facade (re-exported at its end).

Frozen dataclasses out (settlement.contracts), no ORM objects. Must not import cardshop.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.models import Agent, Merchant
from payments import facade as payments
from settlement.checks import ledger_check_run
from settlement.contracts import PostingLineView, PostingView
from settlement.models import AccountKind, LedgerEntry, LedgerTransaction, PartyKind, TransactionKind


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


def party_labels(parties: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """{(party kind, party id): "merchant Demo Shop"} for the parties given: one query per kind of party."""
    parties = set(parties)
    names: dict[tuple[str, int], str] = {}
    by_kind: dict[str, set[int]] = {}
    for kind, pk in parties:
        by_kind.setdefault(kind, set()).add(pk)
    if PartyKind.MERCHANT in by_kind:
        for pk, name in Merchant.objects.filter(pk__in=by_kind[PartyKind.MERCHANT]).values_list("pk", "name"):
            names[(PartyKind.MERCHANT, pk)] = name
    if PartyKind.AGENT in by_kind:
        for pk, name in Agent.objects.filter(pk__in=by_kind[PartyKind.AGENT]).values_list("pk", "name"):
            names[(PartyKind.AGENT, pk)] = name
    if PartyKind.CHANNEL_ACCOUNT in by_kind:
        for pk, name in payments.channel_account_names(account_ids=sorted(by_kind[PartyKind.CHANNEL_ACCOUNT])).items():
            names[(PartyKind.CHANNEL_ACCOUNT, pk)] = name
    labels = {}
    for kind, pk in parties:
        kind_label = PartyKind(kind).label if kind in PartyKind.values else kind
        if kind == PartyKind.PLATFORM:
            labels[(kind, pk)] = str(kind_label)
        else:
            labels[(kind, pk)] = f"{kind_label} {names.get((kind, pk), f'#{pk}')}"
    return labels


def account_kind_label(kind: str) -> str:
    return str(AccountKind(kind).label) if kind in AccountKind.values else kind


def transaction_kind_label(kind: str) -> str:
    return str(TransactionKind(kind).label) if kind in TransactionKind.values else kind


def ledger_check_nightly() -> int:
    """Run and store the invariant check (settlement.checks); the number of problems found (0 when clean)."""
    return ledger_check_run().problem_count


__all__ = [
    "account_kind_label",
    "ledger_check_nightly",
    "party_labels",
    "postings_for_reference",
    "transaction_kind_label",
]
