"""Where a channel account may send credentials, and where a provider may send our buyers.

Each channel has its provider's official API hosts. Epay and the bank gateway have no single official host:
the deployer names theirs in CARDSHOP_GATEWAY_HOSTS (JSON, {"epay": ["pay.example.com"], ...}). An account's
base_url must be https to one of its channel's hosts; http(s) to a loopback simulator is allowed only with
DEBUG on or CARDSHOP_ALLOW_LOOPBACK_GATEWAYS=1. So nobody with admin access can point a live account (and the
credentials it signs with) at a host they typed.

Knows settings only; imports nothing from the rest of payments.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

# The providers' own API gateways (production and, for Alipay, the official sandbox).
OFFICIAL_HOSTS: dict[str, tuple[str, ...]] = {
    "alipay": ("openapi.alipay.com", "openapi-sandbox.dl.alipaydev.com"),
    "wechatpay": ("api.mch.weixin.qq.com", "api2.mch.weixin.qq.com"),
    "stripe": ("api.stripe.com",),
}
# Pages on the provider's side that a buyer may be sent to besides the API host: Alipay's QR links, WeChat
# Pay's H5 cashier, Stripe's hosted Checkout page.
CASHIER_HOSTS: dict[str, tuple[str, ...]] = {
    "alipay": ("qr.alipay.com",),
    "wechatpay": ("wx.tenpay.com",),
    "stripe": ("checkout.stripe.com",),
}
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# Links that open the provider's app on the buyer's phone (WeChat Pay native, Alipay), not web pages.
APP_SCHEMES = frozenset({"weixin", "alipays"})


def _host(url: str) -> tuple[str, str]:
    """(scheme, hostname) in lower case; ("", "") for anything that is not an absolute URL."""
    try:
        parts = urlsplit(url.strip())
        return parts.scheme.lower(), (parts.hostname or "").lower().rstrip(".")
    except ValueError:
        return "", ""


def gateway_hosts(code: str) -> frozenset[str]:
    """The hosts an account of channel `code` may call: official ones plus the deployer's list."""
    configured = getattr(settings, "CARDSHOP_GATEWAY_HOSTS", {}).get(code, ())
    return frozenset(h.lower().rstrip(".") for h in (*OFFICIAL_HOSTS.get(code, ()), *configured))


def loopback_allowed() -> bool:
    return bool(settings.DEBUG or getattr(settings, "CARDSHOP_ALLOW_LOOPBACK_GATEWAYS", False))


def base_url_check(*, code: str, base_url: str) -> None:
    """Raise ValidationError (on the base_url field) unless `base_url` is an allowed gateway of `code`."""
    scheme, host = _host(base_url)
    if host in LOOPBACK_HOSTS and scheme in ("http", "https"):
        if loopback_allowed():
            return
        raise ValidationError(
            {
                "base_url": _(
                    "Loopback gateways (simulators) are allowed only with DEBUG or CARDSHOP_ALLOW_LOOPBACK_GATEWAYS."
                )
            }
        )
    allowed = gateway_hosts(code)
    if scheme == "https" and host in allowed:
        return
    if not allowed:
        message = _("Channel %(code)s has no official gateway host: list yours in CARDSHOP_GATEWAY_HOSTS.") % {
            "code": code
        }
    else:
        message = _("The gateway must be https to one of: %(hosts)s.") % {"hosts": ", ".join(sorted(allowed))}
    raise ValidationError({"base_url": message})


def provider_link_ok(*, code: str, base_url: str, link: str) -> bool:
    """Whether a link a provider gave us (cashier, pay page, QR URL) may be shown to a buyer: http(s) to the
    account's own gateway host or, for an account on an official gateway, to that provider's cashier hosts.
    An empty link is fine (nothing is shown); a weixin:// or alipays:// app link is not a web page and passes;
    any other scheme (javascript:, data:, relative paths) is refused."""
    if not link:
        return True
    scheme, host = _host(link)
    if scheme not in ("http", "https"):
        return scheme in APP_SCHEMES
    own_scheme, own_host = _host(base_url)
    if host == own_host:
        return True
    if own_host in LOOPBACK_HOSTS:
        return False  # a simulator's links stay on the simulator
    return host in gateway_hosts(code) | frozenset(CASHIER_HOSTS.get(code, ()))
