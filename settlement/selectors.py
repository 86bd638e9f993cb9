"""Reads on the ledger for other apps and the admin."""

from __future__ import annotations

from django.db.models import QuerySet, Sum

from core.crypto import mask
from settlement.contracts import MerchantBalances, MerchantMoneyView, Page, PayoutView, StatementLineView
from settlement.models import (
    BALANCE_ROW_KINDS,
    OPEN_PAYOUT_STATES,
    AccountKind,
    FeePlan,
    LedgerAccount,
    LedgerEntry,
    PartyKind,
    Payout,
    ReleaseState,
    SaleRelease,
)
from settlement.services.sales import provider_share, sale_key


def merchant_balances(*, merchant_id: int, currency: str) -> MerchantBalances:
    """Pending, available, reserve and owed of one merchant (0 for an account not used yet): two reads."""
    for view in merchant_money(merchant_id=merchant_id, currency=currency):
        return view.balances
    return MerchantBalances(
        merchant_id=merchant_id, currency=currency, pending_minor=0, available_minor=0, reserve_minor=0, owed_minor=0
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


# --- what a merchant sees of its money (the merchant API and console) ------------------------------------------------

MERCHANT_ACCOUNT_KINDS = (
    AccountKind.MERCHANT_PENDING,
    AccountKind.MERCHANT_AVAILABLE,
    AccountKind.MERCHANT_RESERVE,
    AccountKind.MERCHANT_OWED,
    AccountKind.PAYOUTS_IN_TRANSIT,
)


def merchant_money(*, merchant_id: int, currency: str = "") -> list[MerchantMoneyView]:
    """The merchant's balances in every currency it has an account in (or in `currency` only), by currency: two
    reads in all. Each figure on its account's normal side."""
    accounts = LedgerAccount.objects.filter(party_kind=PartyKind.MERCHANT, party_id=merchant_id)
    accounts = list(accounts.filter(currency=currency) if currency else accounts)
    summed = [a.pk for a in accounts if a.kind not in BALANCE_ROW_KINDS]
    sums = (
        dict(
            LedgerEntry.objects.filter(account_id__in=summed)
            .order_by()
            .values_list("account_id")
            .annotate(s=Sum("amount_minor"))
        )
        if summed
        else {}
    )
    by_currency: dict[str, dict[str, int]] = {}
    for a in accounts:
        figures = by_currency.setdefault(a.currency, {})
        kept = a.balance_minor if a.kind in BALANCE_ROW_KINDS else sums.get(a.pk) or 0
        # Each on its normal side: the credit-normal ones are credits (negative) in the ledger's sign.
        figures[a.kind] = kept if a.kind in BALANCE_ROW_KINDS or not AccountKind(a.kind).credit_normal else -kept
    return [
        MerchantMoneyView(
            balances=MerchantBalances(
                merchant_id=merchant_id,
                currency=currency,
                pending_minor=f.get(AccountKind.MERCHANT_PENDING, 0),
                available_minor=f.get(AccountKind.MERCHANT_AVAILABLE, 0),
                reserve_minor=f.get(AccountKind.MERCHANT_RESERVE, 0),
                owed_minor=f.get(AccountKind.MERCHANT_OWED, 0),
            ),
            in_transit_minor=f.get(AccountKind.PAYOUTS_IN_TRANSIT, 0),
        )
        for currency, f in sorted(by_currency.items())
    ]


def _keyset(rows: QuerySet, *, before: int | None, after: int | None, limit: int) -> tuple[list, bool, bool]:
    """(rows newest first, has newer, has older): `limit` + 1 rows read from an index range, never an OFFSET."""
    if after is not None:
        found = list(rows.filter(pk__gt=after).order_by("pk")[: limit + 1])
        return found[:limit][::-1], len(found) > limit, True
    if before is not None:
        rows = rows.filter(pk__lt=before)
    found = list(rows.order_by("-pk")[: limit + 1])
    return found[:limit], before is not None, len(found) > limit


def merchant_statement(
    *,
    merchant_id: int,
    currency: str = "",
    account_kind: str = "",
    before: int | None = None,
    after: int | None = None,
    limit: int = 20,
) -> Page[StatementLineView]:
    """The lines of the merchant's accounts, newest first (optionally one currency, one kind of account)."""
    accounts = LedgerAccount.objects.filter(party_kind=PartyKind.MERCHANT, party_id=merchant_id)
    if currency:
        accounts = accounts.filter(currency=currency)
    if account_kind:
        accounts = accounts.filter(kind=account_kind)
    kinds = dict(accounts.values_list("pk", "kind"))
    rows = LedgerEntry.objects.filter(account_id__in=list(kinds)).select_related("transaction")
    found, newer, older = _keyset(rows, before=before, after=after, limit=limit) if kinds else ([], False, False)
    return Page(
        items=tuple(
            StatementLineView(
                line_id=e.pk,
                transaction_id=e.transaction_id,
                created_at=e.transaction.created_at,
                transaction_kind=e.transaction.kind,
                reference=e.transaction.reference,
                account_kind=kinds[e.account_id],
                amount_minor=-e.amount_minor,  # a credit is money to the merchant; a debit of owed, less owed
                currency=e.currency,
                memo=e.transaction.memo,
            )
            for e in found
        ),
        has_newer=newer,
        has_older=older,
    )


def payout_view(p: Payout) -> PayoutView:
    """The payout as its party sees it (`retry_of` read with it: select_related)."""
    return PayoutView(
        payout_id=p.pk,
        payout_no=p.payout_no,
        party_kind=p.party_kind,
        party_id=p.party_id,
        state=p.state,
        amount_minor=p.amount_minor,
        currency=p.currency,
        channel_account_id=p.channel_account_id,
        payee_masked=mask(p.payee),
        failure_reason=p.failure_reason,
        retry_of=p.retry_of.payout_no if p.retry_of_id else None,
        created_at=p.created_at,
        finished_at=p.finished_at,
    )


def _merchant_payouts(merchant_id: int) -> QuerySet[Payout]:
    return Payout.objects.filter(party_kind=PartyKind.MERCHANT, party_id=merchant_id).select_related("retry_of")


def merchant_payouts(
    *, merchant_id: int, state: str = "", before: int | None = None, after: int | None = None, limit: int = 20
) -> Page[PayoutView]:
    rows = _merchant_payouts(merchant_id)
    if state == "open":
        rows = rows.filter(state__in=OPEN_PAYOUT_STATES)
    elif state:
        rows = rows.filter(state=state)
    found, newer, older = _keyset(rows, before=before, after=after, limit=limit)
    items = tuple(payout_view(p) for p in found)
    return Page(items=items, has_newer=newer, has_older=older)


def merchant_payout(*, merchant_id: int, payout_no: str) -> PayoutView | None:
    """One of the merchant's payouts; None for another party's, as for one that does not exist."""
    p = _merchant_payouts(merchant_id).filter(payout_no=payout_no).first()
    return None if p is None else payout_view(p)
