"""The merchant console at /merchant/: a merchant's users see their balances, orders and payouts, and manage their
API keys, webhooks and alerts. Every read is scoped to the user's merchant; every change is one service call, the
same the API and the admin make. A secret made here (a key, a webhook secret) is shown once, on the page that
answers the form, never stored in the session or a message."""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from cardshop import selectors
from cardshop.admin_site import otp_required
from cardshop.console_forms import AlertSettingsForm, ApiKeyForm, CouponForm, MerchantLoginForm, WebhookEndpointForm
from cardshop.models import CouponKind, OrderState
from cardshop.services.coupons import coupon_create, coupon_deactivate
from cardshop.services.merchant_alerts import merchant_alert_settings_save
from cardshop.services.merchant_api import api_key_create, api_key_revoke
from cardshop.services.webhooks import webhook_endpoint_create, webhook_endpoint_disable, webhook_endpoint_enable
from core.errors import DomainError
from core.money import Money
from settlement import facade as settlement

ORDERS_PER_PAGE = 50


def merchant_user_required(view):
    """The signed-in user's merchant as `request.merchant`, or the console's login (with the second factor when
    staff need one too). No page of the console may be kept by a browser or proxy cache (never_cache)."""

    @never_cache
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        member = selectors.merchant_member_for(user=request.user)
        if member is None or (otp_required() and not request.user.is_verified()):
            return redirect(f"{reverse('console_login')}?{urlencode({'next': request.get_full_path()})}")
        request.merchant = member.merchant
        return view(request, *args, **kwargs)

    return wrapped


def _actor(request: HttpRequest) -> str:
    return f"merchant_user:{request.user.get_username()}"


def _money(amount_minor: int, currency: str) -> str:
    return Money(amount_minor, currency).display()


@require_http_methods(["GET", "POST"])
def console_login(request: HttpRequest) -> HttpResponse:
    form = MerchantLoginForm(request, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        auth_login(request, form.get_user())  # django_otp keeps the verified device in the session
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
            target = reverse("console_home")
        return redirect(target or reverse("console_home"))
    return render(
        request,
        "cardshop/console/login.html",
        {"form": form, "next": request.GET.get("next", request.POST.get("next", ""))},
    )


@require_POST
def console_logout(request: HttpRequest) -> HttpResponse:
    auth_logout(request)
    return redirect("console_login")


@merchant_user_required
def console_home(request: HttpRequest) -> HttpResponse:
    merchant = request.merchant
    balances = [
        {
            "currency": m.balances.currency,
            "available": _money(m.balances.available_minor, m.balances.currency),
            "pending": _money(m.balances.pending_minor, m.balances.currency),
            "reserve": _money(m.balances.reserve_minor, m.balances.currency),
            "owed": _money(m.balances.owed_minor, m.balances.currency),
            "in_transit": _money(m.in_transit_minor, m.balances.currency),
        }
        for m in settlement.merchant_money(merchant_id=merchant.pk)
    ]
    orders = selectors.order_list_for_merchant(merchant_id=merchant.pk).select_related("product").order_by("-pk")
    payouts = settlement.merchant_payouts(merchant_id=merchant.pk, limit=5).items
    context = {"balances": balances, "orders": orders[:10], "payouts": _payout_rows(payouts), "section": "home"}
    return render(request, "cardshop/console/home.html", context)


@merchant_user_required
def console_orders(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "")
    if state not in OrderState.values:
        state = ""
    orders = selectors.order_list_for_merchant(merchant_id=request.merchant.pk, state=state)
    before = request.GET.get("before", "")
    if before.isdigit():
        orders = orders.filter(pk__lt=int(before))
    page = list(orders.select_related("product").order_by("-pk")[: ORDERS_PER_PAGE + 1])
    context = {
        "orders": page[:ORDERS_PER_PAGE],
        "older": page[ORDERS_PER_PAGE - 1].pk if len(page) > ORDERS_PER_PAGE else None,
        "state": state,
        "states": OrderState.choices,
        "section": "orders",
    }
    return render(request, "cardshop/console/orders.html", context)


def _payout_rows(payouts) -> list[dict]:
    return [
        {
            "id": p.payout_no,
            "state": p.state,
            "amount": _money(p.amount_minor, p.currency),
            "payee": p.payee_masked,
            "created_at": p.created_at,
            "finished_at": p.finished_at,
            "failure_reason": p.failure_reason,
        }
        for p in payouts
    ]


@merchant_user_required
def console_payouts(request: HttpRequest) -> HttpResponse:
    before = request.GET.get("before", "")
    page = settlement.merchant_payouts(
        merchant_id=request.merchant.pk, before=int(before) if before.isdigit() else None, limit=ORDERS_PER_PAGE
    )
    context = {
        "payouts": _payout_rows(page.items),
        "older": page.items[-1].payout_id if page.has_older else None,
        "section": "payouts",
    }
    return render(request, "cardshop/console/payouts.html", context)


@merchant_user_required
@require_http_methods(["GET", "POST"])
def console_keys(request: HttpRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST or None)
    made = None
    if request.method == "POST" and form.is_valid():
        try:
            made = api_key_create(
                merchant_id=request.merchant.pk,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                mode=form.cleaned_data["mode"],
                actor=_actor(request),
            )
            form = ApiKeyForm()
        except DomainError as exc:
            form.add_error(None, exc.message)
    keys = selectors.api_keys_for_merchant(merchant_id=request.merchant.pk)
    context = {"form": form, "made": made, "keys": keys, "section": "keys"}
    return render(request, "cardshop/console/keys.html", context)


@merchant_user_required
@require_POST
def console_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        key = api_key_revoke(key_id=key_id, merchant_id=request.merchant.pk, actor=_actor(request))
    except DomainError:
        raise Http404 from None
    messages.success(request, _("Key %(key)s is revoked.") % {"key": key.masked})
    return redirect("console_keys")


@merchant_user_required
@require_http_methods(["GET", "POST"])
def console_webhooks(request: HttpRequest) -> HttpResponse:
    form = WebhookEndpointForm(request.POST or None)
    made = None
    if request.method == "POST" and form.is_valid():
        try:
            made = webhook_endpoint_create(
                merchant_id=request.merchant.pk,
                url=form.cleaned_data["url"],
                description=form.cleaned_data["description"],
                event_types=form.cleaned_data["event_types"],
                actor=_actor(request),
            )
            form = WebhookEndpointForm()
        except DomainError as exc:
            form.add_error("url", exc.message)
    endpoints = selectors.webhook_endpoints_for_merchant(merchant_id=request.merchant.pk)
    context = {"form": form, "made": made, "endpoints": endpoints, "section": "webhooks"}
    return render(request, "cardshop/console/webhooks.html", context)


@merchant_user_required
@require_POST
def console_webhook_switch(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    switch = {"merchant_id": request.merchant.pk, "endpoint_id": endpoint_id, "actor": _actor(request)}
    try:
        if request.POST.get("enable"):
            webhook_endpoint_enable(**switch)
        else:
            webhook_endpoint_disable(**switch, reason="disabled in the merchant console")
    except DomainError as exc:
        if exc.code == "not_found":
            raise Http404 from None
        messages.error(request, exc.message)
    return redirect("console_webhooks")


@merchant_user_required
@require_http_methods(["GET", "POST"])
def console_alerts(request: HttpRequest) -> HttpResponse:
    current = selectors.alert_settings_for_merchant(merchant_id=request.merchant.pk)
    form = AlertSettingsForm(request.POST or None, instance=current)
    if request.method == "POST" and form.is_valid():
        merchant_alert_settings_save(merchant_id=request.merchant.pk, fields=form.cleaned_data, actor=_actor(request))
        messages.success(request, _("Alert settings saved."))
        return redirect("console_alerts")
    return render(request, "cardshop/console/alerts.html", {"form": form, "section": "alerts"})


@merchant_user_required
@require_http_methods(["GET", "POST"])
def console_coupons(request: HttpRequest) -> HttpResponse:
    form = CouponForm(request.POST or None, merchant_id=request.merchant.pk)
    if request.method == "POST" and form.is_valid():
        try:
            coupon = coupon_create(merchant_id=request.merchant.pk, fields=form.service_fields(), actor=_actor(request))
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        except DomainError as exc:
            form.add_error("code" if exc.code == "coupon_code_taken" else None, exc.message)
        else:
            messages.success(request, _("Coupon %(code)s is ready.") % {"code": coupon.code})
            return redirect("console_coupons")
    rows = [
        {
            "coupon": c,
            "off": f"{c.percent_off} %" if c.kind == CouponKind.PERCENT else _money(c.amount_off_minor, c.currency),
        }
        for c in selectors.coupons_for_merchant(merchant_id=request.merchant.pk).select_related("product")
    ]
    return render(request, "cardshop/console/coupons.html", {"form": form, "rows": rows, "section": "coupons"})


@merchant_user_required
@require_POST
def console_coupon_deactivate(request: HttpRequest, coupon_id: int) -> HttpResponse:
    try:
        coupon_deactivate(merchant_id=request.merchant.pk, coupon_id=coupon_id, actor=_actor(request))
    except DomainError:
        raise Http404 from None
    return redirect("console_coupons")
