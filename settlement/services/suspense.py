"""Suspense: money received that belongs to no sale yet (paid but undeliverable, a second payment of an order).

The channel's clearing is debited what it remits (gross minus its fee) and the fee expense its fee, as for a
sale; suspense is credited the whole gross, so that moving it to a sale later (sales.sale_from_suspense_post)
or refunding it (refunds.refund_post) takes the gross back out in one line.
"""

from __future__ import annotations

from settlement.ledger import Line, ledger_accounts, ledger_post, require_atomic
from settlement.models import PLATFORM_PARTY_ID, AccountKind, LedgerTransaction, PartyKind, TransactionKind
from settlement.services.sales import suspense_key

SUSPENSE_REASONS = ("undeliverable", "second_payment", "sale_refused")


def suspense_post(
    *,
    out_trade_no: str,
    order_no: str,
    gross_minor: int,
    currency: str,
    channel_account_id: int,
    channel_fee_minor: int,
    reason: str,
) -> LedgerTransaction:
    """Book a payment to suspense (key `suspense:<out_trade_no>`, memo the reason); a replay returns the first."""
    require_atomic()
    parts = [
        (
            (PartyKind.CHANNEL_ACCOUNT, channel_account_id, AccountKind.CHANNEL_CLEARING),
            gross_minor - channel_fee_minor,
        ),
        ((PartyKind.CHANNEL_ACCOUNT, channel_account_id, AccountKind.CHANNEL_FEE_EXPENSE), channel_fee_minor),
        ((PartyKind.PLATFORM, PLATFORM_PARTY_ID, AccountKind.SUSPENSE), -gross_minor),
    ]
    parts = [(spec, amount) for spec, amount in parts if amount]
    accounts = ledger_accounts(currency=currency, specs=[spec for spec, _ in parts])
    lines = [Line(account_id=accounts[spec].pk, amount_minor=amount, currency=currency) for spec, amount in parts]
    return ledger_post(
        key=suspense_key(out_trade_no),
        kind=TransactionKind.SUSPENSE,
        reference=order_no,
        lines=lines,
        memo=reason,
        accounts={a.pk: a for a in accounts.values()},
    )
