"""The back office runs on a maintained admin theme (django-unfold): every admin of ours is a theme admin, the
operators' site keeps its second factor, our own pages use the theme's fields, and charts speak shop time."""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse
from unfold.admin import ModelAdmin as UnfoldModelAdmin
from unfold.sites import UnfoldAdminSite

from cardshop.admin_site import CardShopAdminSite, OperatorLoginForm
from tests.operators.auth import operator_login, staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def op(db) -> Client:
    return operator_login(Client(), staff_user("op", superuser=True))


def test_the_operators_site_is_the_theme_site_with_its_second_factor_login():
    assert isinstance(admin.site, CardShopAdminSite) and isinstance(admin.site, UnfoldAdminSite)
    assert admin.site.login_form is OperatorLoginForm


def test_every_registered_admin_is_a_theme_admin():
    plain = [
        f"{m._meta.label}: {type(a).__name__}"
        for m, a in admin.site._registry.items()
        if not isinstance(a, UnfoldModelAdmin)
    ]
    assert plain == []


def test_the_login_page_is_the_themes_with_the_code_field(client, settings):
    settings.CARDSHOP_ADMIN_OTP_REQUIRED = True
    page = client.get(reverse("admin:login")).content.decode()
    assert "unfold/css/styles.css" in page
    assert 'name="otp_token"' in page and 'autocomplete="one-time-code"' in page


def test_our_own_admin_pages_use_the_themes_fields(op, product):
    page = op.get(reverse("admin:cardshop_product_import", args=[product.pk])).content.decode()
    textarea = re.search(r"<textarea[^>]*name=\"text\"[^>]*>", page).group(0)
    assert "border-base-200" in textarea  # unfold's input classes, not a bare browser field
    assert "unfold/css/styles.css" in page


def test_channel_health_charts_are_labelled_in_shop_time(op, epay_account, settings, time_machine):
    settings.TIME_ZONE = "Asia/Shanghai"
    time_machine.move_to(datetime(2026, 12, 1, 16, 30, 20, tzinfo=ZoneInfo("UTC")), tick=False)  # 00:30 in Shanghai
    page = op.get(reverse("admin:payments_channel_health")).content.decode()
    series = json.loads(
        re.search(r'<script id="health-series" type="application/json">(.*?)</script>', page, re.S).group(1)
    )
    assert series["labels"][-1] == "00:30"
