"""Money reaching or leaving a merchant's available balance, with what the merchant owes netted first.

A refund after the merchant's money was released takes it back from merchant available, down to zero and never
below (payouts may only spend what is there: the no-overdraft CHECK stays); what available cannot cover is
debited to `merchant_owed`, a receivable (debit-normal) the admin shows as owed. Money that later reaches
available (a T+0 sale, a release, a reserve release) pays the owed balance first and only the rest is credited
to available. Both balance rows are locked together, in pk order, before their balances are read, so the
netting is exact under concurrent postings of one merchant.
"""

from __future__ import annotations

from settlement.ledger import AccountSpec, ledger_accounts
from settlement.locks import ledger_accounts_locked
from settlement.models import AccountKind, LedgerAccount, PartyKind


def merchant_money_locked(*, merchant_id: int, currency: str) -> tuple[LedgerAccount, LedgerAccount]:
    """The merchant's available and owed accounts (created on first use), locked, with fresh balances."""
    specs: list[AccountSpec] = [
        (PartyKind.MERCHANT, merchant_id, AccountKind.MERCHANT_AVAILABLE),
        (PartyKind.MERCHANT, merchant_id, AccountKind.MERCHANT_OWED),
    ]
    found = ledger_accounts(currency=currency, specs=specs)
    locked = {a.pk: a for a in ledger_accounts_locked(sorted(a.pk for a in found.values()))}
    return locked[found[specs[0]].pk], locked[found[specs[1]].pk]


def credit_parts(
    *, available: LedgerAccount, owed: LedgerAccount, amount_minor: int
) -> list[tuple[LedgerAccount, int]]:
    """Raw (debit +) lines crediting `amount_minor` to the merchant: owed first, the rest to available."""
    to_owed = min(amount_minor, owed.balance_minor)
    parts = [(owed, -to_owed), (available, -(amount_minor - to_owed))]
    return [(account, amount) for account, amount in parts if amount]


def debit_parts(*, available: LedgerAccount, owed: LedgerAccount, amount_minor: int) -> list[tuple[LedgerAccount, int]]:
    """Raw (debit +) lines taking `amount_minor` back from the merchant: available down to zero, the rest owed."""
    from_available = min(amount_minor, available.balance_minor)
    parts = [(available, from_available), (owed, amount_minor - from_available)]
    return [(account, amount) for account, amount in parts if amount]
