"""Channel code -> its provider simulator class, for the conformance suite, the benchmarks and the demo."""

from __future__ import annotations

import importlib

from payments.simulators.base import ProviderSimulator

SIMULATORS = {
    "epay": "payments.simulators.epay:EpaySimulator",
    "alipay": "payments.simulators.alipay:AlipaySimulator",
    "bankgw": "payments.simulators.bankgw:BankGatewaySimulator",
    "stripe": "payments.simulators.stripe:StripeSimulator",
    "wechatpay": "payments.simulators.wechatpay:WechatPaySimulator",
}


def simulator_class(code: str) -> type[ProviderSimulator]:
    module, _, name = SIMULATORS[code].partition(":")
    return getattr(importlib.import_module(module), name)
