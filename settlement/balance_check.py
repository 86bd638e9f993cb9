"""The balance check of channel accounts: the ledger's channel clearing balance of each account against the
provider's own word on what it holds (payments.facade.channel_balance: available plus pending).

The clearing account is debit-normal: sales and money out of suspense debit it with what the channel keeps for the
shop (the gross less the channel's fee), refunds and paid payouts credit it. So its balance is what the provider
should hold, and the difference shows what the ledger has not heard of yet, or what went wrong. Some differences
are legitimate and pass by themselves (DIFFERENCE_REASONS). A read: nothing is written, no lock is taken, and the
provider is asked only after the ledger was read. Reaches payments through its facade only; must not import
cardshop nor payments.channels.
"""

from __future__ import annotations

from dataclasses import replace

from django.db.models import Sum
from django.utils.translation import gettext_lazy as _

from core.money import Money
from payments import facade as payments
from payments.contracts import BalanceUnavailable
from settlement.contracts import BalanceCheck
from settlement.models import AccountKind, LedgerEntry, PartyKind, Payout, PayoutState

# Why a provider may legitimately hold another amount than the ledger's clearing balance, for operators.
DIFFERENCE_REASONS = (
    _(
        "payouts in transit: sent and not final yet, some providers have taken the money while the ledger still holds it"
    ),
    _(
        "statements not yet settled: a payment whose callback is late, a refund or a fee billed apart that the "
        "provider booked and the day's reconciliation has not brought into the ledger yet"
    ),
    _("money the provider account held before the shop used it, top-ups, or payouts made outside the shop"),
    _("a merchant's own account (split at the provider) holds the merchant's money, outside the ledger once split"),
)

# Payouts that may have left the provider while the ledger has not credited the clearing account yet.
IN_TRANSIT_STATES = (PayoutState.SUBMITTED, PayoutState.UNKNOWN)


def balance_checks(*, channel_account_ids: list[int]) -> list[BalanceCheck]:
    """One check per account, in the order given. The ledger is read in three queries for all of them; then each
    provider is asked, one after the other (a provider that cannot tell gives its error, not a balance)."""
    ids = list(channel_account_ids)
    currencies = payments.channel_account_currencies(account_ids=ids)
    ledger = dict(
        ((party_id, currency), total)
        for party_id, currency, total in LedgerEntry.objects.filter(
            account__party_kind=PartyKind.CHANNEL_ACCOUNT,
            account__party_id__in=ids,
            account__kind=AccountKind.CHANNEL_CLEARING,
        )
        .order_by()
        .values_list("account__party_id", "account__currency")
        .annotate(total=Sum("amount_minor"))
    )
    in_transit = dict(
        ((account_id, currency), total)
        for account_id, currency, total in Payout.objects.filter(
            channel_account_id__in=ids, state__in=IN_TRANSIT_STATES
        )
        .order_by()
        .values_list("channel_account_id", "currency")
        .annotate(total=Sum("amount_minor"))
    )
    checks = []
    for account_id in ids:
        currency = currencies.get(account_id)
        if currency is None:
            continue  # no such channel account
        checks.append(
            _checked(
                account_id,
                currency,
                Money(ledger.get((account_id, currency)) or 0, currency),
                Money(in_transit.get((account_id, currency)) or 0, currency),
            )
        )
    return checks


def balance_check(channel_account_id: int) -> BalanceCheck:
    """The check of one channel account (see balance_checks)."""
    found = balance_checks(channel_account_ids=[channel_account_id])
    if not found:
        raise LookupError(f"no channel account {channel_account_id}")
    return found[0]


def _checked(account_id: int, currency: str, ledger: Money, in_transit: Money) -> BalanceCheck:
    try:
        seen = payments.channel_balance(channel_account_id=account_id)
    except BalanceUnavailable as exc:
        explanation = _("Ask again later.") if exc.retryable else _("The provider refused to tell.")
        return BalanceCheck(
            account_id,
            currency,
            ledger,
            in_transit,
            error_code=exc.code,
            error=exc.message,
            explanation=str(explanation),
        )
    check = BalanceCheck(
        channel_account_id=account_id,
        currency=currency,
        ledger=ledger,
        payouts_in_transit=in_transit,
        provider_available=seen.available,
        provider_pending=seen.pending,
        as_of=seen.as_of,
    )
    return replace(check, explanation=explain(check))


def explain(check: BalanceCheck) -> str:
    """A short text for operators: nothing to explain, the payouts in transit exactly, or the usual causes."""
    difference = check.difference
    if difference is None:
        return ""
    if difference.amount_minor == 0:
        return str(_("The provider holds what the ledger says."))
    if check.payouts_in_transit.amount_minor and difference == Money(0, check.currency) - check.payouts_in_transit:
        return str(
            _("The difference is the payouts in transit (%(amount)s): it goes once they are final.")
            % {"amount": check.payouts_in_transit}
        )
    # The causes are listed once under the table: a row only says which way to look.
    return str(_("Not explained by payouts in transit: see the usual causes below, then the day's reconciliation."))
