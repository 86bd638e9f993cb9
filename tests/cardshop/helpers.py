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
