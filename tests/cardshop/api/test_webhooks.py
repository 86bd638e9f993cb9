"""Webhooks (issue 14, proof 3): delivered to a loopback receiver that verifies them with the `standardwebhooks`
package (not with our code), retried on the spec's schedule with time moved, an endpoint failing for 5 days (or
answering 410) disabled and its merchant told, secrets rotated with both signing, and URLs that reach our own network
refused."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from cardshop.models import CardSecret, WebhookDelivery, WebhookEndpoint, WebhookEvent
from cardshop.models.webhooks import DeliveryState
from cardshop.services.webhooks import (
    RETRY_SCHEDULE,
    webhook_deliveries_due,
    webhook_delivery_replay,
)
from tests.cardshop.api.conftest import endpoint_for, paid_via_api, publish

ORDERS, ENDPOINTS, EVENTS = "/api/v1/orders/", "/api/v1/webhook_endpoints/", "/api/v1/events/"


@pytest.fixture(autouse=True)
def _no_low_stock(settings):
    settings.CARDSHOP_LOW_STOCK_THRESHOLD = 0  # a sale of shop_a's 3 codes is no stock.low here (it has its tests)


def test_paid_and_delivered_orders_reach_the_merchant_signed_and_without_secrets(
    api, shop_a, epay_sim, client, receiver, django_capture_on_commit_callbacks
):
    endpoint = endpoint_for(api, receiver.url, description="my shop")
    assert endpoint["secret"].startswith("whsec_") and endpoint["event_types"] == []
    assert "secret" not in api.get(f"{ENDPOINTS}{endpoint['id']}/").json()  # shown once
    order_no = paid_via_api(api, shop_a, epay_sim, client)
    assert publish(django_capture_on_commit_callbacks) == 2
    bodies = receiver.verified(endpoint["secret"])
    assert [(b["type"], b["data"]["id"], b["data"]["state"]) for b in bodies] == [
        ("order.paid", order_no, "delivered"),
        ("order.delivered", order_no, "delivered"),
    ]
    sold = CardSecret.objects.get(order__order_no=order_no).secret
    assert not any(sold in body.decode() for _headers, body in receiver.requests)  # no card secret, ever
    ids = [headers["webhook-id"] for headers, _body in receiver.requests]
    listed = api.get(EVENTS).json()["data"]
    assert [e["id"] for e in listed] == ids[::-1] and listed[0]["payload"] == bodies[1]
    assert api.get(EVENTS, {"type": "order.paid"}).json()["data"][0]["id"] == ids[0]
    assert set(WebhookDelivery.objects.values_list("state", "attempts")) == {(DeliveryState.SUCCEEDED, 1)}
    assert publish(django_capture_on_commit_callbacks) == 0 and len(receiver.requests) == 2  # published once


def test_an_endpoint_gets_only_the_types_it_asked_for(
    api, shop_a, epay_sim, client, receiver, django_capture_on_commit_callbacks
):
    endpoint_for(api, receiver.url, event_types=["order.delivered"])
    paid_via_api(api, shop_a, epay_sim, client)
    publish(django_capture_on_commit_callbacks)
    assert [json.loads(body)["type"] for _h, body in receiver.requests] == ["order.delivered"]
    assert WebhookEvent.objects.count() == 2  # both are events (the events API lists them), one was wanted


def test_a_failing_delivery_is_retried_on_the_schedule_with_the_same_id(
    api, shop_a, epay_sim, client, receiver, django_capture_on_commit_callbacks
):
    endpoint = endpoint_for(api, receiver.url, event_types=["order.paid"])
    receiver.codes = [500, 503, 302]  # a redirect is not followed: it is a failure too
    paid_via_api(api, shop_a, epay_sim, client)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        publish(django_capture_on_commit_callbacks)
        receiver.verify_last(endpoint["secret"])  # each try signed anew, at its own time (within the tolerance)
        delivery = WebhookDelivery.objects.get()
        waits = []
        for _ in range(3):
            delivery.refresh_from_db()
            waits.append(round((delivery.next_attempt_at - timezone.now()).total_seconds()))
            clock.shift(timedelta(seconds=waits[-1] - 1))
            with django_capture_on_commit_callbacks(execute=True):
                assert webhook_deliveries_due() == 0  # not due yet
            clock.shift(timedelta(seconds=1))
            with django_capture_on_commit_callbacks(execute=True):
                assert webhook_deliveries_due() == 1
            receiver.verify_last(endpoint["secret"])
    assert waits == list(RETRY_SCHEDULE[1:4])  # 5 s, 5 min, 30 min
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == (DeliveryState.SUCCEEDED, 4, 200)
    assert [a.status_code for a in delivery.log.all()] == [500, 503, 302, 200]
    assert len(receiver.requests) == 4 and len({h["webhook-id"] for h, _b in receiver.requests}) == 1
    assert WebhookEndpoint.objects.get().failing_since is None  # a success clears it


def test_an_endpoint_failing_for_five_days_is_disabled_and_its_merchant_told(
    api, shop_a, epay_sim, client, receiver, django_capture_on_commit_callbacks
):
    shop_a.merchant.email = "owner@example.com"
    shop_a.merchant.save()
    endpoint_for(api, receiver.url, event_types=["order.paid"])
    receiver.codes = [500] * 100
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        paid_via_api(api, shop_a, epay_sim, client)
        publish(django_capture_on_commit_callbacks)
        for wait in RETRY_SCHEDULE[1:]:
            clock.shift(timedelta(seconds=wait))
            with django_capture_on_commit_callbacks(execute=True):
                webhook_deliveries_due()
        first = WebhookDelivery.objects.get()
        assert (first.state, first.attempts) == (DeliveryState.FAILED, len(RETRY_SCHEDULE))  # about 3 days
        assert WebhookEndpoint.objects.get().is_active  # failing for 3 days, not 5
        clock.move_to(start + timedelta(days=5, seconds=1))
        paid_via_api(api, shop_a, epay_sim, client)
        publish(django_capture_on_commit_callbacks)
    endpoint = WebhookEndpoint.objects.get()
    assert not endpoint.is_active and endpoint.disabled_reason == "Every delivery failed for 5 days."
    assert [m.to for m in mail.outbox if "webhook" in m.subject] == [["owner@example.com"]]
    with pytest.raises(Exception, match="Enable the endpoint first"):
        webhook_delivery_replay(delivery_id=first.pk, actor="op")
    assert api.post(f"{ENDPOINTS}{endpoint.pk}/enable/").json()["is_active"] is True
    receiver.codes = []  # the merchant fixed its server
    with django_capture_on_commit_callbacks(execute=True):
        webhook_delivery_replay(delivery_id=first.pk, actor="op")  # the replay button: one more try, now
    first.refresh_from_db()
    assert first.state == DeliveryState.SUCCEEDED and first.attempts == len(RETRY_SCHEDULE)


def test_410_gone_disables_the_endpoint_at_once(
    api, shop_a, epay_sim, client, receiver, django_capture_on_commit_callbacks
):
    endpoint_for(api, receiver.url, event_types=["order.paid"])
    receiver.codes = [410]
    paid_via_api(api, shop_a, epay_sim, client)
    publish(django_capture_on_commit_callbacks)
    assert not WebhookEndpoint.objects.get().is_active
    assert WebhookDelivery.objects.get().state == DeliveryState.ABANDONED


def test_during_a_rotation_both_secrets_sign(
    api, shop_a, epay_sim, client, receiver, django_capture_on_commit_callbacks
):
    old = endpoint_for(api, receiver.url, event_types=["order.paid"])
    new = api.post(f"{ENDPOINTS}{old['id']}/rotate_secret/").json()
    assert new["secret"] != old["secret"] and new["secret"].startswith("whsec_")
    paid_via_api(api, shop_a, epay_sim, client)
    publish(django_capture_on_commit_callbacks)
    ((headers, _body),) = receiver.requests
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert receiver.verified(old["secret"]) == receiver.verified(new["secret"])  # either verifies
    with time_machine.travel(timezone.now() + timedelta(hours=25), tick=False):
        paid_via_api(api, shop_a, epay_sim, client)
        publish(django_capture_on_commit_callbacks)
    assert len(receiver.requests[-1][0]["webhook-signature"].split(" ")) == 1  # the old one expired after a day


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hooks",
        "http://[::1]/hooks",
        "http://10.1.2.3/hooks",
        "http://192.168.0.10/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:8000/hooks",  # a name that resolves to loopback
        "ftp://example.com/hooks",
        "http://user:pass@93.184.216.34/hooks",
    ],
)
def test_urls_into_our_own_network_are_refused(api, shop_a, settings, url):
    settings.CARDSHOP_WEBHOOKS_ALLOW_PRIVATE = False
    refused = api.post(ENDPOINTS, {"url": url}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "url", refused.json()
    assert not WebhookEndpoint.objects.exists()


def test_a_public_address_is_accepted(api, shop_a, settings):
    settings.CARDSHOP_WEBHOOKS_ALLOW_PRIVATE = False
    assert api.post(ENDPOINTS, {"url": "https://93.184.216.34/hooks"}, format="json").status_code == 201


def test_the_admin_shows_the_delivery_log_and_replays_a_delivery(
    api, shop_a, epay_sim, client, receiver, django_capture_on_commit_callbacks
):
    from django.contrib.auth import get_user_model

    from tests.operators.auth import operator_login

    endpoint = endpoint_for(api, receiver.url, event_types=["order.paid"])
    receiver.codes = [500]
    paid_via_api(api, shop_a, epay_sim, client)
    publish(django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    op = operator_login(client, get_user_model().objects.create_superuser("op", "op@example.com", "op-pass-123456"))
    page = op.get(f"/admin/cardshop/webhookdelivery/{delivery.pk}/change/").content.decode()
    assert "500" in page and delivery.event.event_id in page
    assert (
        endpoint["secret"] not in op.get(f"/admin/cardshop/webhookendpoint/{endpoint['id']}/change/").content.decode()
    )
    with django_capture_on_commit_callbacks(execute=True):
        done = op.post(
            "/admin/cardshop/webhookdelivery/", {"action": "replay", "_selected_action": [delivery.pk]}, follow=True
        )
    assert "1 delivery(ies) sent again." in done.content.decode()
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.SUCCEEDED and [a.status_code for a in delivery.log.all()] == [500, 200]
