"""Reads on the ledger for other apps and the admin."""

from __future__ import annotations

from django.db.models import Sum

from settlement.contracts import MerchantBalances
from settlement.models import BALANCE_ROW_KINDS, AccountKind, LedgerAccount, LedgerEntry, PartyKind


def merchant_balances(*, merchant_id: int, currency: str) -> MerchantBalances:
    """Pending, available, reserve and owed of one merchant (0 for an account not used yet): two reads."""
    accounts = LedgerAccount.objects.filter(party_kind=PartyKind.MERCHANT, party_id=merchant_id, currency=currency)
    kept = {a.kind: a.balance_minor for a in accounts if a.kind in BALANCE_ROW_KINDS}
    sums = dict(
        LedgerEntry.objects.filter(
            account__in=accounts.filter(kind__in=[AccountKind.MERCHANT_PENDING, AccountKind.MERCHANT_RESERVE])
        )
        .order_by()
        .values_list("account__kind")
        .annotate(s=Sum("amount_minor"))
    )
    return MerchantBalances(
        merchant_id=merchant_id,
        currency=currency,
        pending_minor=-(sums.get(AccountKind.MERCHANT_PENDING) or 0),
        available_minor=kept.get(AccountKind.MERCHANT_AVAILABLE) or 0,
        reserve_minor=-(sums.get(AccountKind.MERCHANT_RESERVE) or 0),
        owed_minor=kept.get(AccountKind.MERCHANT_OWED) or 0,
    )
