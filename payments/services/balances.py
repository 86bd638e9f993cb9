"""What the balance check reads from payments: the provider's own word on what a channel account holds (I/O, no
lock, nothing written). Settlement compares it with its ledger; it never sees an adapter or its errors."""

from __future__ import annotations

from payments.channels.base import Capability, ChannelError, Retryable
from payments.contracts import BalanceUnavailable, ChannelAccountBalance
from payments.models import ChannelAccount
from payments.services.adapters import adapter_for


def channel_balance(*, channel_account_id: int) -> ChannelAccountBalance:
    """adapter.balance() of the account. Raises BalanceUnavailable when the channel has no balance API or the
    provider could not tell (the adapter's typed error, its code kept)."""
    account = ChannelAccount.objects.get(pk=channel_account_id)
    adapter = adapter_for(account)
    if Capability.BALANCE not in adapter.capabilities:
        raise BalanceUnavailable("balance_unsupported", f"channel {account.code} reports no balance")
    try:
        seen = adapter.balance()
    except ChannelError as exc:
        raise BalanceUnavailable(exc.code, str(exc)[:200], retryable=isinstance(exc, Retryable)) from exc
    if seen.available.currency != account.currency or (
        seen.pending is not None and seen.pending.currency != account.currency
    ):
        raise BalanceUnavailable("currency_mismatch", f"{account.code} answered a balance in another currency")
    return ChannelAccountBalance(
        channel_account_id=account.pk,
        channel_code=account.code,
        available=seen.available,
        pending=seen.pending,
        as_of=seen.as_of,
        provider_status=seen.provider_status,
    )
