"""How buyers read payment methods: the labels the product page and the pay page share."""

from __future__ import annotations

from django.utils.translation import gettext_lazy

METHOD_LABELS = {
    "alipay": gettext_lazy("Alipay"),
    "wxpay": gettext_lazy("WeChat Pay"),
    "card": gettext_lazy("Card"),
    "bank": gettext_lazy("Online banking"),
    "qqpay": gettext_lazy("QQ Wallet"),
}


def method_label(method: str) -> str:
    return str(METHOD_LABELS.get(method, method))
