"""Idempotency-Key: a retry gets the first answer, another body under the same key is a 409, a concurrent duplicate
never runs twice (real PostgreSQL, two connections), and keys are forgotten after 24 hours."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from cardshop.models import Product
from cardshop.models.merchant_api import IdempotencyRecord
from cardshop.services.merchant_api import idempotency_records_sweep
from tests.cardshop.api.conftest import client_for, key_for

PRODUCTS = "/api/v1/products/"
NEW = {"name": "Steam 50", "slug": "steam-50", "price": {"amount_minor": 4990, "currency": "CNY"}}


def test_a_retry_with_the_same_key_gets_the_first_answer_and_makes_nothing_more(api, shop_a):
    first = api.post(PRODUCTS, NEW, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post(PRODUCTS, NEW, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert Product.objects.filter(slug="steam-50").count() == 1
    refused = api.post(PRODUCTS, {**NEW, "slug": "a-code"}, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert (
        api.post(PRODUCTS, {**NEW, "slug": "a-code"}, format="json", HTTP_IDEMPOTENCY_KEY="k-2").json()
        == refused.json()
    )


def test_the_same_key_with_another_body_is_a_409_and_changes_nothing(api, shop_a):
    api.post(PRODUCTS, NEW, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    other = api.post(PRODUCTS, {**NEW, "slug": "steam-100"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 409
    assert other.json()["error"] == {
        "type": "idempotency_error",
        "code": "idempotency_key_reused",
        "message": "This Idempotency-Key was used for a different request: use a new key for a new request.",
        "param": "Idempotency-Key",
    }
    assert not Product.objects.filter(slug="steam-100").exists()
    elsewhere = api.post(f"{PRODUCTS}{shop_a.pk}/retire/", format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert elsewhere.status_code == 409  # another endpoint is another request
    shop_a.refresh_from_db()
    assert shop_a.is_active


def test_keys_belong_to_one_merchant_and_are_forgotten_after_24_hours(api, shop_a, shop_b):
    neighbour = client_for(key_for(shop_b.merchant))
    assert api.post(PRODUCTS, NEW, format="json", HTTP_IDEMPOTENCY_KEY="k-1").status_code == 201
    theirs = neighbour.post(PRODUCTS, {**NEW, "slug": "b-steam"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert theirs.status_code == 201 and theirs.json()["slug"] == "b-steam"  # B's k-1 is not A's
    assert idempotency_records_sweep(now=timezone.now() + timedelta(hours=23)) == 0
    assert idempotency_records_sweep(now=timezone.now() + timedelta(hours=24, seconds=1)) == 2
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_with_one_key_run_once(require_postgres, merchant, epay_account, settings):
    settings.CARDSHOP_API_RATE = "100000/s"
    token = key_for(merchant)
    start, answers = threading.Barrier(2), []

    def post() -> None:
        try:
            start.wait()
            answers.append(client_for(token).post(PRODUCTS, NEW, format="json", HTTP_IDEMPOTENCY_KEY="same"))
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Product.objects.filter(slug="steam-50").count() == 1
    codes = sorted(a.status_code for a in answers)
    assert codes in ([201, 201], [201, 409]), codes  # the second waited and replayed, or met the running first
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"]["code"] == "idempotency_key_in_use"


def test_the_beat_sweeps_old_keys_every_hour(api, shop_a):
    from cardshop.celery import app
    from cardshop.tasks import api_idempotency_sweep_task

    entry = app.conf.beat_schedule["api-idempotency-sweep"]
    assert entry == {"task": "cardshop.api_idempotency_sweep", "schedule": 3600.0}
    api.post(PRODUCTS, NEW, format="json", HTTP_IDEMPOTENCY_KEY="old")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    api.post(PRODUCTS, {**NEW, "slug": "new"}, format="json", HTTP_IDEMPOTENCY_KEY="new")
    assert api_idempotency_sweep_task.delay().get() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
