"""Every select_for_update on settlement models.

Lock order: Order, Payment, CardSecret, SaleRelease, LedgerAccount, Payout (a sale's release row is taken
before the balance rows its posting moves).
"""

from django.db.models import QuerySet

from settlement.models import LedgerAccount, SaleRelease


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
