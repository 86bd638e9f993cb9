"""HTTP helpers for storefront tests that talk to a live server like a browser would."""

from __future__ import annotations

import re

import requests

CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def csrf_token(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def checkout(
    session: requests.Session,
    base: str,
    slug: str,
    *,
    quantity=1,
    email="buyer@example.com",
    password="hunter22",
    extra=None,
):
    page = session.get(f"{base}/p/{slug}/")
    assert page.status_code == 200
    data = {
        "csrfmiddlewaretoken": csrf_token(page.text),
        "quantity": quantity,
        "email": email,
        "query_password": password,
    }
    data.update(extra or {})
    return session.post(f"{base}/p/{slug}/", data=data, headers={"Referer": f"{base}/p/{slug}/"}, allow_redirects=False)


def buy(product, qty=1, email="a@example.com", ip="10.0.0.1", password="secret1", **kwargs):
    """order_create with the defaults most tests share."""
    from cardshop.services.checkout import order_create

    return order_create(
        product_id=product.pk, quantity=qty, email=email, query_password=password, buyer_ip=ip, **kwargs
    )


def signed_notify(epay_sim, out_trade_no: str, **overrides) -> dict[str, str]:
    """The simulator's validly signed notify for our payment `out_trade_no`."""
    return epay_sim.notify_params(epay_sim.trade_for(out_trade_no)["trade_no"], **overrides)


def as_lists(params: dict[str, str]) -> dict[str, list[str]]:
    """Parameters as a request carries them (every key may repeat), for payment_notification_handle."""
    return {k: [v] for k, v in params.items()}
