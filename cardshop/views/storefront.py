"""Storefront pages: catalog, product + checkout, order page and status poll, lookup, cancel."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_ratelimit.core import get_usage

from cardshop import selectors
from cardshop.device import device_of
from cardshop.forms import CheckoutForm, LookupForm
from cardshop.models import DeliveryKind, OrderState
from cardshop.services import checkout, delivery, orders, risk_signals
from cardshop.services.notifications import order_link_token_check
from cardshop.services.pricing import unit_price_for
from cardshop.views.access import grant_order, granted_orders, order_for_session_or_404
from core.client_ip import client_ip, ratelimit_key
from core.errors import DomainError
from core.money import CURRENCY_SYMBOLS, Money, MoneyError, exponent

log = logging.getLogger(__name__)


@require_GET
@cache_control(public=True, max_age=60 * 60 * 24)
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page links; answer from the static file, not a 404."""
    path = finders.find("cardshop/favicon.ico")
    if path is None:
        raise Http404
    with open(path, "rb") as f:
        return HttpResponse(f.read(), content_type="image/x-icon")


@require_GET
def catalog(request: HttpRequest) -> HttpResponse:
    """The catalog: category tabs (?c=<slug>), a search by name (?q=), the two combinable. On the "all" tab the
    products are grouped under their categories, the uncategorised ones last."""
    context = _catalog(request, merchant_id=None)
    return render(request, "cardshop/catalog.html", context | {"announcement": selectors.shop_announcement_text()})


def merchant_shop(request: HttpRequest, slug: str) -> HttpResponse:
    """A merchant's own page: the catalog of its products alone, with its announcement."""
    found = selectors.merchant_for_shop_page(slug=slug)
    if found is None:
        raise Http404
    merchant, announcement = found
    context = _catalog(request, merchant_id=merchant.pk)
    return render(request, "cardshop/catalog.html", context | {"merchant": merchant, "announcement": announcement})


def _catalog(request: HttpRequest, *, merchant_id: int | None) -> dict:
    query = request.GET.get("q", "").strip()[: selectors.SEARCH_MAX_LENGTH]
    slug = request.GET.get("c", "").strip()
    categories = selectors.category_list_for_catalog(merchant_id=merchant_id)
    category = selectors.category_for_catalog(slug=slug) if slug else None
    unknown_category = bool(slug) and category is None  # a stale link: nothing matches, the tabs still help
    products = (
        []
        if unknown_category
        else list(selectors.product_list_for_catalog(category=category, query=query, merchant_id=merchant_id))
    )
    groups: dict[int | None, dict] = {}
    for product in products:
        group = groups.setdefault(product.category_id, {"category": product.category, "products": []})
        group["products"].append((product, selectors.product_stock(product)))
    order = {c.pk: i for i, c in enumerate(categories)}
    sections = sorted(
        groups.values(),
        key=lambda g: (g["category"] is None, order.get(g["category"].pk, len(order)) if g["category"] else 0),
    )
    return {
        "sections": sections,
        "categories": categories,
        "category": category,
        "query": query,
        "filtered": bool(query or slug),
        "here": request.path,
    }


@require_http_methods(["GET", "POST"])
def product_detail(request: HttpRequest, slug: str) -> HttpResponse:
    if request.method == "POST":
        product = selectors.product_for_checkout(slug=slug)
    else:
        product = selectors.product_on_sale(slug=slug)
    if product is None:
        raise Http404
    form = CheckoutForm(
        request.POST or None,
        product=product,
        methods_for=lambda quantity: selectors.payment_methods_for(product=product, quantity=quantity),
        initial={"quantity": product.min_quantity},
    )
    pending_order = None  # the buyer's own unpaid order, named when the email's pending cap refused them
    if request.method == "POST" and form.is_valid():
        custom = {f["name"]: request.POST.get(f"field_{f['name']}", "") for f in product.custom_fields}
        try:
            order = checkout.order_create(
                product_id=product.pk,
                quantity=form.cleaned_data["quantity"],
                email=form.cleaned_data["email"],
                query_password=form.cleaned_data["query_password"],
                buyer_ip=client_ip(request) or None,
                custom_input=custom,
                language=request.LANGUAGE_CODE,
                device=device_of(request),
                coupon_code=form.cleaned_data["coupon"],
            )
        except checkout.ChallengeRequired as exc:
            return redirect("checkout_confirm", token=exc.token)
        except checkout.TooManyPending as exc:
            if exc.order_no and exc.order_no in granted_orders(request):
                # The browser that bought it: the order is named, with pay and cancel links.
                form.add_error(None, exc.message)
                pending_order = {"order_no": exc.order_no, "granted": True}
            elif exc.order_no:
                # Anyone can type an email: elsewhere no order number is shown, only the way to find it.
                form.add_error(
                    None,
                    _("This email already has unpaid orders. Pay or cancel them first: order lookup finds them."),
                )
                pending_order = {"order_no": "", "granted": False}
            else:
                form.add_error(None, exc.message)
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            grant_order(request, order.order_no)
            pay_url = reverse("order_pay", args=[order.order_no])
            method = form.cleaned_data["method"]
            # The pay page starts the payment with the method picked here (and asks when none was).
            return redirect(f"{pay_url}?{urlencode({'method': method})}" if method else pay_url)
    stock = selectors.product_stock(product)  # annotated on GET, one count query after a failed POST
    form.show_stock(stock)
    try:
        exp = exponent(product.currency)
    except MoneyError:
        exp = None  # legacy currency: no running total rather than a wrong one
    context = {
        "product": product,
        "stock": stock,
        "form": form,
        "announcement": selectors.shop_announcement_text(),
        "tiers": [
            {"min_quantity": t["min_quantity"], "label": Money(t["unit_price_minor"], product.currency).display()}
            for t in product.price_tiers
        ],
        "total": {
            "label": Money(
                unit_price_for(product, form.shown_quantity()) * form.shown_quantity(), product.currency
            ).display(),
            "price_minor": product.price_minor,
            "tiers_json": json.dumps(product.price_tiers),
            "exponent": exp,
            "symbol": CURRENCY_SYMBOLS.get(product.currency, product.currency + " "),
        }
        if exp is not None
        else None,
        "pending_order": pending_order,
        "custom_fields": product.custom_fields if product.delivery_kind == DeliveryKind.MANUAL else [],
    }
    return render(request, "cardshop/product.html", context, status=400 if form.errors else 200)


@never_cache  # the page carries card secrets: no browser or proxy may keep a copy
@require_GET
def order_detail(request: HttpRequest, order_no: str) -> HttpResponse:
    token = request.GET.get("t")
    if token and order_link_token_check(token) == order_no:
        grant_order(request, order_no)
    if request.GET:
        # Mailed tokens and the provider's return parameters must not linger in the address bar or history.
        return redirect("order_detail", order_no=order_no)
    order = order_for_session_or_404(request, order_no)
    context = {
        "order": order,
        "secrets": delivery.order_secrets_for_buyer(order=order),
        "is_pending": order.state == OrderState.PENDING,
        "poll": order.state in (OrderState.REVIEW, OrderState.PENDING, OrderState.PAID),
        "refund": selectors.order_refund_for_buyer(order=order),
        "second_payment_refunds": selectors.second_payment_refunds_for_buyer(order=order),
    }
    return render(request, "cardshop/order.html", context)


@never_cache  # card secrets: no browser or proxy may keep a copy
@require_GET
def order_codes_txt(request: HttpRequest, order_no: str) -> HttpResponse:
    """All delivered codes as a text file, one per line, for the session that may see the order."""
    order = order_for_session_or_404(request, order_no)
    codes = delivery.order_secrets_for_buyer(order=order)
    if not codes:
        raise Http404
    # Only counts reach the log: the codes themselves are secrets.
    log.info("order %s: %d delivered codes downloaded as text", order.order_no, len(codes))
    response = HttpResponse("\n".join(codes) + "\n", content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="order-{order.order_no}.txt"'
    return response


@never_cache
@require_GET
def order_status(request: HttpRequest, order_no: str) -> JsonResponse:
    state = selectors.order_state_for_buyer(order_no=order_no, granted=granted_orders(request))
    if state is None:
        raise Http404
    return JsonResponse({"order_no": order_no, "state": state, "label": str(OrderState(state).label)})


@require_POST
def order_cancel(request: HttpRequest, order_no: str) -> HttpResponse:
    order = order_for_session_or_404(request, order_no)
    try:
        orders.order_cancel(order_no=order.order_no)
    except DomainError as exc:
        messages.error(request, exc.message)
    return redirect("order_detail", order_no=order_no)


def _lockout_message(seconds_left: int) -> str:
    """Say how long until the fixed rate-limit window that refused the buyer ends (-1: the cache failed)."""
    if seconds_left < 0:
        return _("Too many attempts. Please wait a while and try again.")
    if seconds_left < 60:
        n = max(seconds_left, 1)
        return ngettext(
            "Too many attempts: try again in %(n)d second.", "Too many attempts: try again in %(n)d seconds.", n
        ) % {"n": n}
    n = -(-seconds_left // 60)  # round up: "in 1 minute" must not turn out to be too early
    return ngettext(
        "Too many attempts: try again in %(n)d minute.", "Too many attempts: try again in %(n)d minutes.", n
    ) % {"n": n}


@never_cache
@require_http_methods(["GET", "POST"])
def order_lookup(request: HttpRequest) -> HttpResponse:
    form = LookupForm(request.POST or None)
    found = None
    status = 200
    if request.method == "POST" and form.is_valid():
        needle = form.cleaned_data["order_no_or_email"].strip().lower()
        # Count every attempt, per IP and per order/email, before checking the password.
        usages = [
            get_usage(
                request, group="lookup-ip", key=ratelimit_key, rate=settings.CARDSHOP_LOOKUP_RATE_IP, increment=True
            ),
            get_usage(
                request,
                group="lookup-order",
                key=lambda _group, _request: needle,
                rate=settings.CARDSHOP_LOOKUP_RATE_ORDER,
                increment=True,
            ),
        ]
        limited = [u for u in usages if u and u["should_limit"]]
        if limited:
            form.add_error(None, _lockout_message(max(u["time_left"] for u in limited)))
            status = 429
        else:
            found = selectors.orders_for_lookup(
                order_no_or_email=needle, query_password=form.cleaned_data["query_password"]
            )
            if found and len(found) == 1:
                grant_order(request, found[0].order_no)
                return redirect("order_detail", order_no=found[0].order_no)
            if found:
                for o in found:
                    grant_order(request, o.order_no)
            else:
                form.add_error(None, _("No order matches this order number or email and password."))
                risk_signals.lookup_failed_record(ip=client_ip(request), device=device_of(request))
                status = 404
    return render(request, "cardshop/lookup.html", {"form": form, "found": found}, status=status)
