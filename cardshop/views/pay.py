"""Pay page: starts (or reuses) the order's payment and shows the channel's QR code and cashier link."""

from __future__ import annotations

import base64
import io

import qrcode
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from cardshop.models import OrderState
from cardshop.services import checkout
from cardshop.views.access import client_ip, order_for_session_or_404
from core.errors import DomainError


def qr_data_uri(content: str) -> str:
    """A real QR image (PNG) of the pay URL, inline so the page needs no second request."""
    buf = io.BytesIO()
    qrcode.make(content, box_size=6, border=2).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@require_GET
def order_pay(request: HttpRequest, order_no: str) -> HttpResponse:
    order = order_for_session_or_404(request, order_no)
    if order.state != OrderState.PENDING:
        return redirect("order_detail", order_no=order_no)
    try:
        payment = checkout.order_payment_start(order_no=order.order_no, client_ip=client_ip(request))
    except DomainError as exc:
        return render(request, "cardshop/pay.html", {"order": order, "error": exc.message}, status=503)
    context = {"order": order, "payment": payment, "qr": qr_data_uri(payment.qr_content or payment.pay_url)}
    return render(request, "cardshop/pay.html", context)
