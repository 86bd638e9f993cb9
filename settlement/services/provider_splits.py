"""The ledger side of channel-side splitting (the provider pays, not us): the split of a sale on a merchant's own
account is booked as that sale's settlement, and a refund of it takes back what the split moved.

A sale on a merchant's own account (`sales._book_split_sale`) leaves the merchant's part in pending, "at the
provider". When the provider reports the split done, `split_post` (key `split:<split_no>`) books what it did:
the merchant's part left for the merchant's own balance (pending debited, the account's clearing credited) and
the platform's share moved to the platform's receiving account (its clearing debited). Nothing is paid out of
the platform's balance: there is no payout for such a sale. The release row says which split settled it.
"""

from __future__ import annotations

from settlement.contracts import SettlementError
from settlement.ledger import Line, ledger_accounts, ledger_post, require_atomic
from settlement.locks import sale_release_locked
from settlement.models import AccountKind, LedgerTransaction, PartyKind, ReleaseState, TransactionKind
from settlement.services.sales import provider_share, sale_key


def split_key(split_no: str) -> str:
    return f"split:{split_no}"


def split_post(
    *, out_trade_no: str, split_no: str, amount_minor: int, currency: str, receiver_account_id: int
) -> LedgerTransaction:
    """Book the provider's split of sale `sale:<out_trade_no>`: `amount_minor` to the platform's account
    `receiver_account_id`, the rest of what the trade remitted released to the merchant. A replay is a no-op;
    a split of another amount than the sale's platform share is refused and changes nothing."""
    require_atomic()
    key = split_key(split_no)
    existing = LedgerTransaction.objects.filter(idempotency_key=key).first()
    if existing is not None:
        existing.replayed = True
        return existing
    sale = LedgerTransaction.objects.filter(idempotency_key=sale_key(out_trade_no)).first()
    release = sale_release_locked(sale_id=sale.pk) if sale is not None else None
    if release is None:
        raise SettlementError("sale_missing", f"no sale of {out_trade_no} to settle by split {split_no}")
    if release.pending_state != ReleaseState.AT_PROVIDER:
        raise SettlementError("not_at_provider", f"sale {sale.idempotency_key} is {release.pending_state}")
    share = provider_share(release.gross_minor, release.channel_fee_minor, release.pending_minor)
    if (amount_minor, currency) != (share, release.currency):
        raise SettlementError(
            "split_mismatch", f"split {split_no} moved {amount_minor} {currency}; the sale's share is {share}"
        )
    merchant_account = (PartyKind.CHANNEL_ACCOUNT, release.channel_account_id, AccountKind.CHANNEL_CLEARING)
    parts = [
        ((PartyKind.MERCHANT, release.merchant_id, AccountKind.MERCHANT_PENDING), release.pending_minor),
        (merchant_account, -(release.pending_minor + share)),
        ((PartyKind.CHANNEL_ACCOUNT, receiver_account_id, AccountKind.CHANNEL_CLEARING), share),
    ]
    parts = [(spec, amount) for spec, amount in parts if amount]
    accounts = ledger_accounts(currency=currency, specs=[spec for spec, _ in parts])
    lines = [Line(account_id=accounts[spec].pk, amount_minor=amount, currency=currency) for spec, amount in parts]
    txn = ledger_post(
        key=key,
        kind=TransactionKind.SPLIT,
        reference=sale.reference,
        lines=lines,
        memo=f"settles {sale.idempotency_key}",
        key_checked=True,
        accounts={a.pk: a for a in accounts.values()},
    )
    release.pending_state = ReleaseState.SPLIT
    release.split_key = key
    release.save(update_fields=["pending_state", "split_key"])
    return txn
