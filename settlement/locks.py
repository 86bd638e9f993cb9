"""Every select_for_update on settlement models.

Lock order: Order, Payment, CardSecret, SaleRelease, PayoutDestination, LedgerAccount, Payout (a sale's release
row is taken before the balance rows its posting moves; an agent's payout destination stands in for the balance
row its commission payable does not keep).
"""

from django.db.models import QuerySet

from settlement.models import LedgerAccount, PayoutDestination, SaleRelease


def ledger_accounts_locked(account_ids: list[int]) -> list[LedgerAccount]:
    """Balance-row accounts locked in pk order (so two postings touching the same pair never deadlock)."""
    return list(LedgerAccount.objects.filter(pk__in=account_ids).order_by("pk").select_for_update(of=("self",)))


def ledger_account_qs_locked() -> QuerySet[LedgerAccount]:
    return LedgerAccount.objects.order_by("pk").select_for_update(of=("self",))


def sale_release_locked(*, sale_id: int, skip_locked: bool = False) -> SaleRelease | None:
    """The release row of one sale, locked; None if there is none (or, with skip_locked, another holds it)."""
    qs = (
        SaleRelease.objects.filter(sale_id=sale_id)
        .order_by("pk")
        .select_for_update(of=("self",), skip_locked=skip_locked)
    )
    return qs.first()


def payout_destination_locked(*, party_kind: str, party_id: int, currency: str) -> PayoutDestination:
    """The party's payout destination in `currency`, locked: what serialises an agent's payouts (settlement.payouts)."""
    return (
        PayoutDestination.objects.filter(party_kind=party_kind, party_id=party_id, currency=currency)
        .order_by("pk")
        .select_for_update(of=("self",))
        .get()
    )
