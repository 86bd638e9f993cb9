"""The events beyond orders (issue 14): payout.paid and payout.failed from settlement's outbox flag, stock.low once
per running low; each delivered signed (verified by the `standardwebhooks` package) and published once."""

from __future__ import annotations

import pytest

from cardshop.models import WebhookEvent
from cardshop.services.stock import card_secrets_import
from payments.contracts import PayoutOutcome, PayoutResult
from settlement.payouts import payout_outcome_apply
from tests.cardshop.api.conftest import endpoint_for, money_for, paid_via_api, publish

PAYOUTS = "/api/v1/payouts/"


def test_a_paid_payout_reaches_its_merchant_once(
    api, shop_a, epay_account, receiver, django_capture_on_commit_callbacks
):
    endpoint = endpoint_for(api, receiver.url, event_types=["payout.paid", "payout.failed"])
    payout = money_for(shop_a.merchant, epay_account)
    assert publish(django_capture_on_commit_callbacks) == 1
    [body] = receiver.verified(endpoint["secret"])
    assert body["type"] == "payout.paid"
    assert body["data"] == api.get(f"{PAYOUTS}{payout.payout_no}/").json()  # the API's object, as it is now
    assert body["data"]["amount"] == {"amount_minor": 939, "currency": "CNY"}
    assert publish(django_capture_on_commit_callbacks) == 0 and len(receiver.requests) == 1
    assert api.get("/api/v1/events/", {"type": "payout.paid"}).json()["data"][0]["payload"] == body


def test_a_failed_payout_says_why(api, shop_a, epay_account, receiver, django_capture_on_commit_callbacks):
    endpoint = endpoint_for(api, receiver.url)
    payout = money_for(shop_a.merchant, epay_account, paid_out=False)
    assert publish(django_capture_on_commit_callbacks) == 0  # held, not final: nothing to say yet
    refused = PayoutOutcome(result=PayoutResult.FAILED, provider_status="PAYEE_NOT_EXIST", failure_reason="no payee")
    payout_outcome_apply(payout_no=payout.payout_no, outcome=refused)
    payout_outcome_apply(payout_no=payout.payout_no, outcome=refused)  # a late duplicate answer: no second event
    assert publish(django_capture_on_commit_callbacks) == 1
    [body] = receiver.verified(endpoint["secret"])
    assert (body["type"], body["data"]["state"], body["data"]["failure_reason"]) == (
        "payout.failed",
        "failed",
        "no payee",
    )


def test_stock_low_is_sent_once_per_running_low(
    api,
    shop_a,
    epay_sim,
    client,
    receiver,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.CARDSHOP_LOW_STOCK_THRESHOLD = 2
    endpoint = endpoint_for(api, receiver.url, event_types=["stock.low"])
    paid_via_api(api, shop_a, epay_sim, client)  # 3 codes, 1 sold: 2 left, at the threshold
    publish(django_capture_on_commit_callbacks)
    [body] = receiver.verified(endpoint["secret"])
    assert body["type"] == "stock.low"
    assert body["data"] == {"product": shop_a.pk, "name": shop_a.name, "stock": 2, "threshold": 2}

    paid_via_api(api, shop_a, epay_sim, client)  # 1 left: still low, but the merchant knows
    publish(django_capture_on_commit_callbacks)
    assert WebhookEvent.objects.filter(type="stock.low").count() == 1

    card_secrets_import(product_id=shop_a.pk, text="NEW-1\nNEW-2")  # stocked again (3 free): low is news again
    paid_via_api(api, shop_a, epay_sim, client)  # 2 left
    publish(django_capture_on_commit_callbacks)
    assert [e.payload["data"]["stock"] for e in WebhookEvent.objects.filter(type="stock.low").order_by("pk")] == [2, 2]


@pytest.mark.parametrize("threshold", [0, 1])
def test_no_stock_low_above_the_threshold(
    api, shop_a, epay_sim, client, settings, threshold, django_capture_on_commit_callbacks
):
    settings.CARDSHOP_LOW_STOCK_THRESHOLD = threshold
    paid_via_api(api, shop_a, epay_sim, client)  # 2 left
    publish(django_capture_on_commit_callbacks)
    assert not WebhookEvent.objects.filter(type="stock.low").exists()
