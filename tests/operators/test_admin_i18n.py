"""Every text the Chinese admin shows is Chinese: a page fails on visible English that is not a proper noun or
a value the operator (here, the demo data) typed in."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.apps import apps
from django.db import models
from django.test import Client
from django.urls import reverse

from cardshop.models import Product
from tests.operators.test_admin_pages import _admin_urls, demo, op  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db

# Words that are legitimately not translated in a Chinese admin.
ALLOWED = {
    "CardShop",  # the product's name
    "Stripe",  # brands; epay is 易支付
    "Telegram",
    "CNY",  # ISO currency codes
    "USD",
    "CSV",  # file formats
    "txt",
    "JPEG",
    "PNG",
    "GIF",
    "WebP",
    "TOTP",  # protocol names
    "UTC",
    "URL",  # "URL 标识" (slug) is how Chinese admins say it
    "JSON",
    "Django",  # "Django 管理" in the page title comes from Django's own catalog
    "esc",  # keyboard keys, as printed on them
    "Control",
    "Command",
    "Mac",
    "English",  # the language switch names each language in its own tongue, with its code (en, zh-hans)
    "hans",
    "userId",  # the providers' own words an operator types as they are: Alipay's receiver types, WeChat's
    "loginName",
    "MERCHANT",  # MERCHANT_ID
}
ICON_CLASS = "material-symbols-outlined"  # the theme's icons are ligatures ("search" draws a magnifier), not words
MASKED = re.compile(r"\*{4,}|·{4}")  # a masked secret shows its own ends: "1f7LHh****", "#12 ····4F2A"
WORD = re.compile(r"[A-Za-z]{3,}")
ATTRS = {"title", "placeholder", "aria-label"}


class _Texts(HTMLParser):
    """Visible text nodes plus the attributes a reader sees (title, placeholder, aria-label, button values)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._skip = 0
        self._icon_depth = 0  # > 0 inside an icon element (counted by its own tag)
        self._icon_tag = ""

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "code", "pre"):  # code and JSON: identifiers as they are (credential keys)
            self._skip += 1
        a = dict(attrs)
        if self._icon_depth and tag == self._icon_tag:
            self._icon_depth += 1
        elif not self._icon_depth and ICON_CLASS in (a.get("class") or "").split():
            self._icon_depth, self._icon_tag = 1, tag
        for name in ATTRS:
            if a.get(name):
                self.texts.append(a[name])
        if tag == "input" and a.get("type") in ("submit", "button", "reset") and a.get("value"):
            self.texts.append(a["value"])

    def handle_endtag(self, tag):
        if tag in ("script", "style", "code", "pre") and self._skip:
            self._skip -= 1
        if self._icon_depth and tag == self._icon_tag:
            self._icon_depth -= 1

    def handle_data(self, data):
        if not self._skip and not self._icon_depth and data.strip():
            self.texts.append(data.strip())


def _data_words() -> set[str]:
    """Every word the demo data holds (names, emails, order numbers, slugs, channel codes, users), its first letter
    lower-cased: shown as typed, or with a capital first letter in titles and breadcrumbs."""
    words: set[str] = set()
    for model in apps.get_models():
        fields = [
            f.attname
            for f in model._meta.concrete_fields
            if isinstance(f, models.CharField | models.TextField | models.JSONField)
        ]
        if not fields:
            continue
        for row in model._default_manager.values_list(*fields):
            for value in row:
                words.update(w[0].lower() + w[1:] for w in WORD.findall(str(value or "")))
    return words


def _english(html: str, allowed: set[str]) -> list[str]:
    parser = _Texts()
    parser.feed(html)
    return [
        t
        for t in parser.texts
        if not MASKED.search(t)
        and any(w not in allowed and w[0].lower() + w[1:] not in allowed for w in WORD.findall(t))
    ]


def test_every_admin_page_is_chinese(op, demo):  # noqa: F811
    product = Product.objects.order_by("pk").first()
    pages = [
        ("dashboard", reverse("admin:index")),
        ("channel health", reverse("admin:payments_channel_health")),
        ("import card secrets", reverse("admin:cardshop_product_import", args=[product.pk])),
        *_admin_urls(),
    ]
    allowed = ALLOWED | _data_words()
    problems = []
    for name, url in pages:
        resp = op.get(url, HTTP_ACCEPT_LANGUAGE="zh-hans")
        assert resp.status_code == 200, (name, url, resp.status_code)
        for text in _english(resp.content.decode(), allowed):
            problems.append(f"{name} ({url}): {text!r}")
    login = Client().get(reverse("admin:login"), HTTP_ACCEPT_LANGUAGE="zh-hans")
    problems += [f"login: {text!r}" for text in _english(login.content.decode(), allowed)]
    assert not problems, "untranslated admin text:\n" + "\n".join(problems)
