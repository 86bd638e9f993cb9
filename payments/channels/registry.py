"""Channel code -> adapter class. Adapters register at app start; lookups never import by name from input."""

from __future__ import annotations

from payments.channels.base import ChannelAdapter, notify_methods_of

_ADAPTERS: dict[str, type[ChannelAdapter]] = {}


def register(adapter: type[ChannelAdapter]) -> type[ChannelAdapter]:
    for attr in (
        "code",
        "methods",
        "capabilities",
        "create",
        "verify_notification",
        "query",
        "ack",
        "notification_reference",
    ):
        if not hasattr(adapter, attr):
            raise TypeError(f"{adapter.__name__} does not implement ChannelAdapter.{attr}")
    _ADAPTERS[adapter.code] = adapter
    return adapter


def get(code: str) -> type[ChannelAdapter] | None:
    return _ADAPTERS.get(code)


def notify_methods(code: str) -> frozenset[str] | None:
    """The HTTP methods channel `code` notifies by; None for a channel that does not exist."""
    adapter = _ADAPTERS.get(code)
    return notify_methods_of(adapter) if adapter is not None else None


def codes() -> list[str]:
    return sorted(_ADAPTERS)


def load_builtin() -> None:
    from payments.channels.alipay.adapter import AlipayAdapter
    from payments.channels.bankgw.adapter import BankGatewayAdapter
    from payments.channels.epay.adapter import EpayAdapter
    from payments.channels.stripe.adapter import StripeAdapter
    from payments.channels.wechatpay.adapter import WechatPayAdapter

    register(EpayAdapter)
    register(AlipayAdapter)
    register(BankGatewayAdapter)
    register(WechatPayAdapter)
    register(StripeAdapter)
