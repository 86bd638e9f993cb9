"""Pay page: starts (or reuses) the order's payment and shows the channel's QR code and cashier link."""

from __future__ import annotations

import hashlib
import io
import logging

import qrcode
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.http import require_GET, require_POST

from cardshop.decline_reasons import decline_message
from cardshop.models import OrderState
from cardshop.payment_methods import METHOD_LABELS
from cardshop.services import checkout
from cardshop.views.access import order_for_session_or_404
from core.client_ip import client_ip
from core.errors import DomainError
from payments import facade as payments
from payments.contracts import PaymentStatus, PaymentUnavailable

log = logging.getLogger(__name__)

QR_TTL = 60 * 30


def qr_png(content: str) -> bytes:
    """A real QR image (PNG) of the pay URL; cached because the pay page is polled and reloaded."""
    key = "qr:" + hashlib.sha256(content.encode()).hexdigest()
    png = cache.get(key)
    if png is None:
        buf = io.BytesIO()
        qrcode.make(content, box_size=6, border=2).save(buf, format="PNG")
        png = buf.getvalue()
        cache.set(key, png, QR_TTL)
    return png


@never_cache
@require_GET
def order_pay(request: HttpRequest, order_no: str) -> HttpResponse:
    order = order_for_session_or_404(request, order_no)
    if order.state != OrderState.PENDING:
        return redirect("order_detail", order_no=order_no)
    # Only what routing would take for this very order (amount limits, caps, rules, breakers) is offered.
    options = payments.payment_options(
        currency=order.currency,
        amount_minor=order.amount_minor,
        merchant_id=order.merchant_id,
        product_ref=order.product.slug,
    )
    offered = {o.method for o in options}
    chosen = request.GET.get("method", "")
    # The live payment matters here only when the method asked for is not offered now: the start shows it anyway.
    live = None if chosen in offered else payments.payment_live_for_reference(reference=order.order_no)
    if not options and live is None:
        if payments.payment_options(currency=order.currency):
            # The currency is served, but no channel takes this payment now (limits, caps, every breaker open).
            message = _(
                "No payment method can take this order right now. Nothing has been charged; please try again "
                "in a few minutes, or the order will expire on its own."
            )
        else:  # no enabled channel takes this currency (disabled after the order was placed)
            message = _(
                "This order cannot be paid at the moment: no payment method accepts %(currency)s. "
                "Nothing has been charged; the order will expire on its own."
            ) % {"currency": order.currency}
        return render(request, "cardshop/pay.html", {"order": order, "error": message}, status=409)
    if live is None and chosen not in offered:
        if len(options) != 1:  # the buyer chooses the method; routing chooses the channel behind it
            labels = [(o.method, METHOD_LABELS.get(o.method, o.method)) for o in options]
            return render(request, "cardshop/pay.html", {"order": order, "options": labels})
        chosen = options[0].method
    try:
        payment = checkout.order_payment_start(
            order_no=order.order_no, client_ip=client_ip(request), method=chosen or "alipay", order=order
        )
    except PaymentUnavailable as exc:
        # The provider's words are for operators (logged); the buyer gets a plain, translated message.
        log.warning("payment start for %s failed: %s %s", order.order_no, exc.code, exc.message)
        message = _("The payment channel is not available right now. Please try again in a moment.")
        return render(request, "cardshop/pay.html", {"order": order, "error": message}, status=503)
    except DomainError as exc:
        return render(request, "cardshop/pay.html", {"order": order, "error": exc.message}, status=409)
    return_url = request.build_absolute_uri(reverse("order_detail", args=[order.order_no]))
    confirming = payment.status in (PaymentStatus.CREATED, PaymentStatus.UNKNOWN)
    context = {
        "order": order,
        "payment": payment,
        "return_url": return_url,
        "confirming": confirming,
        "method_label": METHOD_LABELS.get(payment.method, ""),
        # A decline the buyer can recover from (another card, another method): the trade is still open. Only a
        # decline sets decline_code; a timeout or query error recorded against the payment is none and shows nothing.
        "declined": payment.status == PaymentStatus.PENDING and bool(payment.decline_code),
        "decline_reason": decline_message(payment.decline_code) if payment.decline_code else "",
        "other_methods": [
            (o.method, METHOD_LABELS.get(o.method, o.method)) for o in options if o.method != payment.method
        ],
    }
    return render(request, "cardshop/pay.html", context)


@require_POST
def order_pay_switch(request: HttpRequest, order_no: str) -> HttpResponse:
    """The buyer picks another method: the old trade is closed at the provider first, then a new one made."""
    order = order_for_session_or_404(request, order_no)
    if order.state != OrderState.PENDING:
        return redirect("order_detail", order_no=order_no)
    method = request.POST.get("method", "")
    if method not in METHOD_LABELS:
        return render(
            request, "cardshop/pay.html", {"order": order, "error": _("Choose a payment method.")}, status=400
        )
    try:
        checkout.order_payment_switch(order_no=order.order_no, client_ip=client_ip(request), method=method)
    except PaymentUnavailable as exc:
        log.warning("payment switch for %s failed: %s %s", order.order_no, exc.code, exc.message)
        message = _("The payment channel is not available right now. Please try again in a moment.")
        return render(request, "cardshop/pay.html", {"order": order, "error": message}, status=503)
    except DomainError as exc:
        return render(request, "cardshop/pay.html", {"order": order, "error": exc.message}, status=409)
    return redirect("order_pay", order_no=order.order_no)


@require_GET
@cache_control(private=True, max_age=QR_TTL)
def order_pay_qr(request: HttpRequest, order_no: str) -> HttpResponse:
    order = order_for_session_or_404(request, order_no)
    payment = payments.payment_live_for_reference(reference=order.order_no)
    if payment is None or not (payment.qr_content or payment.pay_url):
        raise Http404
    return HttpResponse(qr_png(payment.qr_content or payment.pay_url), content_type="image/png")
