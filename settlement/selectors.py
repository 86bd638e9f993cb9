"""Reads on the ledger for other apps and the admin."""

from __future__ import annotations

from django.db.models import Sum

from settlement.contracts import MerchantBalances
from settlement.models import (
    BALANCE_ROW_KINDS,
    AccountKind,
    FeePlan,
    LedgerAccount,
    LedgerEntry,
    PartyKind,
    ReleaseState,
    SaleRelease,
)
from settlement.services.sales import provider_share, sale_key


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


def sale_provider_share(*, out_trade_no: str) -> int | None:
    release = (
        SaleRelease.objects.filter(sale__idempotency_key=sale_key(out_trade_no), pending_state=ReleaseState.AT_PROVIDER)
        .values("gross_minor", "channel_fee_minor", "pending_minor")
        .first()
    )
    if release is None:
        return None
    return provider_share(release["gross_minor"], release["channel_fee_minor"], release["pending_minor"])


def plan_splits_at_provider(*, merchant_id: int, currency: str) -> bool:
    return FeePlan.objects.filter(
        merchant_id=merchant_id, currency=currency, is_active=True, split_at_provider=True
    ).exists()
