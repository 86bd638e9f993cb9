"""Every select_for_update on settlement models. Lock order: Order, Payment, CardSecret, LedgerAccount, Payout."""

from django.db.models import QuerySet

from settlement.models import LedgerAccount


def ledger_accounts_locked(account_ids: list[int]) -> list[LedgerAccount]:
    """Balance-row accounts locked in pk order (so two postings touching the same pair never deadlock)."""
    return list(LedgerAccount.objects.filter(pk__in=account_ids).order_by("pk").select_for_update(of=("self",)))


def ledger_account_qs_locked() -> QuerySet[LedgerAccount]:
    return LedgerAccount.objects.order_by("pk").select_for_update(of=("self",))
