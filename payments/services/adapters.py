"""One place that turns a channel account row into its adapter (credentials decrypted, timeouts set)."""

from __future__ import annotations

from django.conf import settings

from payments.channels import registry
from payments.channels.base import AccountConfig, ChannelAdapter
from payments.contracts import PaymentUnavailable
from payments.models import ChannelAccount


def _account_config(account: ChannelAccount) -> AccountConfig:
    return AccountConfig(
        account_id=account.pk,
        code=account.code,
        merchant_no=account.merchant_no,
        base_url=account.base_url,
        currency=account.currency,
        credentials=account.credentials_dict(),
        timeouts=tuple(settings.PAYMENTS_PROVIDER_TIMEOUTS),
    )


def adapter_for(account: ChannelAccount) -> ChannelAdapter:
    cls = registry.get(account.code)
    if cls is None:
        raise PaymentUnavailable("unknown_channel", f"no adapter for channel {account.code!r}")
    return cls(_account_config(account))


def channel_accounts_with(capability: str) -> list[int]:
    """Ids of the enabled channel accounts whose channel's adapter has `capability` (payout, statement, ...)."""
    return [
        a.pk
        for a in ChannelAccount.objects.filter(enabled=True).order_by("pk")
        if (cls := registry.get(a.code)) is not None and capability in cls.capabilities
    ]
