"""What other apps may call in settlement. Frozen dataclasses in and out (settlement.contracts); no ORM objects.

Every function here posts inside the caller's `transaction.atomic` block: the ledger books what the caller's
transaction decides, and commits or rolls back with it.
"""

from __future__ import annotations

from settlement.contracts import PostingLineView, PostingView
from settlement.models import LedgerTransaction
from settlement.services import sales


def _view(txn: LedgerTransaction) -> PostingView:
    entries = txn.entries.select_related("account").order_by("pk")
    return PostingView(
        transaction_id=txn.pk,
        key=txn.idempotency_key,
        kind=txn.kind,
        reference=txn.reference,
        created_at=txn.created_at,
        lines=tuple(
            PostingLineView(
                party_kind=e.account.party_kind,
                party_id=e.account.party_id,
                account_kind=e.account.kind,
                amount_minor=e.amount_minor,
                currency=e.currency,
            )
            for e in entries
        ),
        replayed=getattr(txn, "replayed", False),
    )


def sale_post(
    *,
    out_trade_no: str,
    order_no: str,
    merchant_id: int,
    gross_minor: int,
    currency: str,
    channel_account_id: int,
    channel_fee_minor: int,
) -> PostingView:
    """Book a paid sale (key `sale:<out_trade_no>`): channel clearing and fee expense debited; merchant pending
    (available on T+0), reserve, each agent level and platform revenue credited. A replay returns the first
    posting with `replayed=True`; the same key for a different sale raises SettlementError `idempotency_conflict`.
    """
    txn = sales.sale_post(
        out_trade_no=out_trade_no,
        order_no=order_no,
        merchant_id=merchant_id,
        gross_minor=gross_minor,
        currency=currency,
        channel_account_id=channel_account_id,
        channel_fee_minor=channel_fee_minor,
    )
    return _view(txn)


from settlement.reads import *  # noqa: E402,F403 - reads for the admin and the nightly check (settlement/reads.py)
