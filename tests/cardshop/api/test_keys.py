"""API keys: stored as prefix + hash + last four, shown once, scoped, revocable; every refusal is the error object."""

from __future__ import annotations

import re

from django.urls import reverse

from cardshop.models.merchant_api import ApiKey
from cardshop.services.merchant_api import api_key_revoke
from core.models import AuditEvent
from tests.cardshop.api.conftest import client_for, key_for
from tests.operators.auth import operator_login, staff_user

PRODUCTS = "/api/v1/products/"


def test_a_key_is_kept_as_prefix_hash_and_last_four_and_opens_only_its_merchants_api(merchant, shop_a):
    token = key_for(merchant, scopes=["read"])
    key = ApiKey.objects.get()
    assert re.fullmatch(r"ck_live_[A-Za-z0-9]{40}", token)
    assert key.prefix == token[:16] and key.last4 == token[-4:] and key.masked == f"{token[:16]}…{token[-4:]}"
    stored = [str(v) for v in ApiKey.objects.values_list(*[f.attname for f in ApiKey._meta.concrete_fields]).get()]
    assert not any(token in v or token[16:-4] in v for v in stored)  # the secret part is in no column
    answer = client_for(token).get(PRODUCTS)
    assert answer.status_code == 200 and [p["slug"] for p in answer.json()["data"]] == ["a-code"]
    assert ApiKey.objects.get().last_used_at is not None


def test_no_key_a_wrong_key_and_a_revoked_key_are_refused_with_the_error_object(client, merchant, shop_a):
    missing = client.get(PRODUCTS)
    assert missing.status_code == 401 and missing["WWW-Authenticate"] == 'Bearer realm="api"'
    assert missing.json()["error"]["type"] == "authentication_error"
    token = key_for(merchant)
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert client_for(forged).get(PRODUCTS).status_code == 401
    assert client_for("ck_live_short").get(PRODUCTS).status_code == 401
    merchant.is_active = False
    merchant.save(update_fields=["is_active"])
    assert client_for(token).get(PRODUCTS).status_code == 401  # a merchant switched off is shut out
    merchant.is_active = True
    merchant.save(update_fields=["is_active"])
    assert client_for(token).get(PRODUCTS).status_code == 200
    api_key_revoke(key_id=ApiKey.objects.get().pk, actor="op")
    revoked = client_for(token).get(PRODUCTS)
    assert revoked.status_code == 401
    assert revoked.json() == {
        "error": {
            "type": "authentication_error",
            "code": "authentication_failed",
            "message": "Invalid or revoked API key.",
            "param": None,
        }
    }


def test_a_key_without_the_scope_is_refused_and_changes_nothing(merchant, shop_a):
    reader = client_for(key_for(merchant, scopes=["read"]))
    assert reader.get(PRODUCTS).status_code == 200
    refused = reader.post(f"{PRODUCTS}{shop_a.pk}/retire/")
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
    shop_a.refresh_from_db()
    assert shop_a.is_active


def test_the_admin_makes_a_key_shows_it_once_and_revokes_it(client, merchant, shop_a):
    admin_client = operator_login(client, staff_user("admin", superuser=True))
    made = admin_client.post(
        reverse("admin:cardshop_apikey_add"),
        {"merchant": merchant.pk, "name": "my site", "mode": "live", "scopes": ["read", "write"]},
    )
    assert made.status_code == 200
    token = re.search(r'<code id="api-key"[^>]*>(ck_live_\w+)</code>', made.content.decode()).group(1)
    key = ApiKey.objects.get()
    assert key.scopes == ["read", "write"] and key.name == "my site" and key.created_by == "admin"
    assert client_for(token).get(PRODUCTS).status_code == 200
    listed = admin_client.get(reverse("admin:cardshop_apikey_changelist")).content.decode()
    assert key.masked in listed and token not in listed
    assert token not in admin_client.get(reverse("admin:cardshop_apikey_change", args=[key.pk])).content.decode()
    admin_client.post(reverse("admin:cardshop_apikey_changelist"), {"action": "revoke", "_selected_action": [key.pk]})
    assert client_for(token).get(PRODUCTS).status_code == 401
    assert list(AuditEvent.objects.order_by("pk").values_list("action", flat=True)) == [
        "api_key_created",
        "api_key_revoked",
    ]
