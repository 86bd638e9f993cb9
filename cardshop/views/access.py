"""Which orders this browser session may open. Grants come from checkout, lookup and mailed links."""

from __future__ import annotations

from django.http import Http404, HttpRequest

from cardshop import selectors
from cardshop.models import Order

SESSION_KEY = "granted_orders"
MAX_GRANTS = 50


def granted_orders(request: HttpRequest) -> list[str]:
    return list(request.session.get(SESSION_KEY, []))


def grant_order(request: HttpRequest, order_no: str) -> None:
    grants = [o for o in granted_orders(request) if o != order_no]
    request.session[SESSION_KEY] = ([order_no] + grants)[:MAX_GRANTS]


def order_for_session_or_404(request: HttpRequest, order_no: str) -> Order:
    order = selectors.access_order_for_buyer(order_no=order_no, granted=granted_orders(request))
    if order is None:
        raise Http404
    return order
