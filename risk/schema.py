"""The features one assessment sees: their names, types and meaning (the schema rules and the model share).

Every assessment computes the whole vector (`FEATURES`, in this order): rules name them, the learned score takes
them as its input columns (`MODEL_FEATURES`, the numeric ones in this order), and each stored assessment keeps
the values it saw. Windows are 1 minute, 1 hour and 1 day; an IPv6 address counts by its /64 network.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Feature:
    name: str
    kind: type  # int, float, bool or str
    doc: str  # lazily translated: shown to operators writing rules


FEATURES: tuple[Feature, ...] = (
    Feature("amount_minor", int, _("the order's amount in minor units")),
    Feature("quantity", int, _("how many codes the order asks for")),
    Feature("ip_orders_1m", int, _("checkouts from this IP (IPv6: its /64) in the last minute")),
    Feature("ip_orders_1h", int, _("checkouts from this IP in the last hour")),
    Feature("ip_orders_1d", int, _("checkouts from this IP in the last day")),
    Feature("ip_amount_1d", int, _("amount (minor units) of the checkouts from this IP in the last day")),
    Feature("email_orders_1h", int, _("checkouts with this email in the last hour")),
    Feature("email_orders_1d", int, _("checkouts with this email in the last day")),
    Feature("domain_orders_1h", int, _("checkouts with an email of this domain in the last hour")),
    Feature("device_orders_1h", int, _("checkouts from this device cookie in the last hour")),
    Feature("device_orders_1d", int, _("checkouts from this device cookie in the last day")),
    Feature("product_orders_1h", int, _("checkouts of this product in the last hour")),
    Feature("merchant_orders_1h", int, _("checkouts of this merchant's products in the last hour")),
    Feature("ip_failed_payments_1h", int, _("failed or declined payments from this IP in the last hour")),
    Feature("device_failed_payments_1h", int, _("failed or declined payments from this device in the last hour")),
    Feature("lookup_failures_ip_1h", int, _("failed order lookups from this IP in the last hour")),
    Feature("product_pending", int, _("codes of this product held by unpaid orders now")),
    Feature("product_pending_share", float, _("share (0..1) of the product's stock held by unpaid orders now")),
    Feature("hour_of_day", int, _("the shop's hour of day, 0..23")),
    Feature("amount_vs_usual", float, _("the amount over the product's usual order amount (1.0 = usual)")),
    Feature("email_disposable", bool, _("the email's domain is a known disposable-mail domain")),
    Feature("buyer_paid_before", bool, _("this email has a paid order before")),
    Feature("email_domain", str, _("the email's domain, lower case")),
    Feature("listed_block", bool, _("the email, its domain, the IP or the device is on the block list")),
    Feature("listed_allow", bool, _("the email, its domain, the IP or the device is on the allow list")),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
# Amounts in minor units of the order's currency (shown to operators in major units).
MONEY_FEATURES: frozenset[str] = frozenset({"amount_minor", "ip_amount_1d"})
FEATURE_TYPES: dict[str, type] = {f.name: f.kind for f in FEATURES}
# The learned score's input columns: every numeric and boolean feature (bools as 0/1), in schema order.
MODEL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.kind is not str)


def model_row(features: dict[str, object]) -> list[float]:
    """A feature dict as the model's input row (MODEL_FEATURES order)."""
    return [float(features[name]) for name in MODEL_FEATURES]
