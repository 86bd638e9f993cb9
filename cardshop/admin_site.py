"""The operators' admin site: password plus a second factor (TOTP or a one-time recovery code) when
CARDSHOP_ADMIN_OTP_REQUIRED (default: DEBUG off), and failed logins throttled per account and per client IP.

Sessions for these pages are server-side rows (cardshop/sessions.py), so a logout ends them for good.
"""

from __future__ import annotations

import hashlib
import re

from django import forms
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from unfold.forms import AuthenticationForm as UnfoldAuthenticationForm
from unfold.sites import UnfoldAdminSite
from unfold.widgets import BASE_INPUT_CLASSES

from core.client_ip import client_ip, ip_group

TOTP_RE = re.compile(r"\d{6}")


def otp_required() -> bool:
    return bool(settings.CARDSHOP_ADMIN_OTP_REQUIRED)


# ---- throttle --------------------------------------------------------------------------------------------


def _keys(username: str, ip: str) -> list[tuple[str, int]]:
    account = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return [
        (f"admin-login:account:{account}", settings.CARDSHOP_ADMIN_LOGIN_FAILURES_PER_ACCOUNT),
        (f"admin-login:ip:{ip_group(ip) or 'unknown'}", settings.CARDSHOP_ADMIN_LOGIN_FAILURES_PER_IP),
    ]


def login_locked(*, username: str, ip: str) -> bool:
    return any(cache.get(f"{key}:locked") for key, _limit in _keys(username, ip))


def login_failed(*, username: str, ip: str) -> None:
    """Count one failure for the account and for the address; at the limit, lock that one for the lockout."""
    lockout = settings.CARDSHOP_ADMIN_LOGIN_LOCKOUT_SECONDS
    for key, limit in _keys(username, ip):
        cache.add(key, 0, timeout=lockout)  # the window starts at the first failure
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, count := 1, timeout=lockout)
        if count >= limit:
            cache.set(f"{key}:locked", 1, timeout=lockout)


def login_succeeded(*, username: str) -> None:
    """A good login clears its account's count (not the address's: one IP may be trying many accounts)."""
    key, _limit = _keys(username, "")[0]
    cache.delete(key)


# ---- login form and site ---------------------------------------------------------------------------------


def _verify_second_factor(user, token: str):
    """The device that accepts `token`: six digits are a TOTP code, anything else a recovery code (used up
    on success). Only the device the token's shape names is tried, so a mistyped code never counts
    against the other one."""
    token = token.replace(" ", "").strip()
    if TOTP_RE.fullmatch(token):
        devices = TOTPDevice.objects.devices_for_user(user, confirmed=True)
    else:
        devices = StaticDevice.objects.devices_for_user(user, confirmed=True)
    for device in devices:
        allowed, _extra = device.verify_is_allowed()
        if allowed and device.verify_token(token):
            return device
    return None


class OperatorLoginForm(UnfoldAuthenticationForm):
    otp_token = forms.CharField(
        label=_("Code from your authenticator app (or a recovery code)"),
        required=False,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "class": " ".join(BASE_INPUT_CLASSES)}
        ),
    )

    error_messages = {
        **UnfoldAuthenticationForm.error_messages,
        "locked": _("Too many failed logins. Try again later."),
        "otp_invalid": _("Enter a valid code from your authenticator app, or an unused recovery code."),
    }

    def __init__(self, request: HttpRequest | None = None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        if not otp_required():
            del self.fields["otp_token"]

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request) if self.request is not None else ""
        # Checked before the password: while locked, even the right password is refused.
        if login_locked(username=username, ip=ip):
            raise forms.ValidationError(self.error_messages["locked"], code="locked")
        try:
            super().clean()  # password, active, staff
            if self.user_cache is None:
                return self.cleaned_data  # a required field is empty: its error is already on the form
            if otp_required():
                device = _verify_second_factor(self.get_user(), self.cleaned_data.get("otp_token") or "")
                if device is None:
                    raise forms.ValidationError(self.error_messages["otp_invalid"], code="otp_invalid")
                self.user_cache.otp_device = device  # django_otp stores it in the session at login
        except forms.ValidationError:
            login_failed(username=username, ip=ip)
            raise
        login_succeeded(username=username)
        return self.cleaned_data


class CardShopAdminSite(UnfoldAdminSite):
    site_header = _("CardShop back office")
    site_title = _("CardShop back office")
    login_form = OperatorLoginForm
    login_template = "admin/cardshop_login.html"
    index_template = "admin/dashboard.html"
    index_title = _("Dashboard")

    def index(self, request: HttpRequest, extra_context: dict | None = None):
        """The admin's home is the dashboard (cardshop/admin_dashboard.py), with the app list below it."""
        from cardshop.admin_dashboard import dashboard_context  # the figures import the models: not at startup

        return super().index(request, {**dashboard_context(request), **(extra_context or {})})

    def get_urls(self):
        """The admin's own URLs plus the settlement dashboard (settlement/admin_dashboard.py)."""
        from django.urls import path

        from settlement.admin_dashboard import settlement_dashboard_view

        def dashboard(request: HttpRequest):
            return settlement_dashboard_view(request, site=self)

        extra = [path("settlement/dashboard/", self.admin_view(dashboard), name="settlement_dashboard")]
        return extra + super().get_urls()

    def has_permission(self, request: HttpRequest) -> bool:
        """Staff who passed the password but not the second factor are treated as not staff."""
        if not super().has_permission(request):
            return False
        return not otp_required() or request.user.is_verified()
