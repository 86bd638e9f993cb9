"""The operators' channel health page: live figures per account, a chart served by the project, and breakers
an operator can open, close or give back to the automatic rules — which routing then obeys."""

import re

import pytest
from django.contrib.auth import get_user_model

from payments import breaker
from payments.models import RoutingSettings
from payments.routing import RoutingRequest
from payments.services import channel_choice
from tests.factories.payments import EpayAccountFactory
from tests.operators.auth import operator_login

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    return operator_login(client, get_user_model().objects.create_superuser("op", "op@example.com", "op-pass-123456"))


def test_health_page_shows_each_account_and_serves_its_chart_library(operator_client):
    a, b = EpayAccountFactory(name="epay A", priority=1), EpayAccountFactory(name="epay B", priority=2)
    channel_choice.create_outcome_record(account_id=a.pk, ok=True, latency_ms=120.0)
    channel_choice.create_outcome_record(account_id=b.pk, ok=False, latency_ms=900.0)
    page = operator_client.get("/admin/payments/channelaccount/health/").content.decode()
    assert f'id="account-{a.pk}"' in page and f'id="account-{b.pk}"' in page
    assert "120 ms" in page and "900 ms" in page
    src = re.search(r'<script src="([^"]*chart[^"]*\.js)"', page).group(1)
    assert src.startswith("/static/")  # served by the project, not a CDN
    assert "Channel health" in operator_client.get("/admin/payments/channelaccount/").content.decode()


def test_operator_opens_a_breaker_and_routing_stops_using_the_account(operator_client):
    RoutingSettings.objects.create(exploration_share=0.0)  # no random exploration in this test
    a, b = EpayAccountFactory(priority=1), EpayAccountFactory(priority=2)
    request = RoutingRequest(amount_minor=990, currency="CNY", method="alipay", merchant_id=None, product_ref="")
    assert channel_choice.channels_rank(request=request).ranked[0] == a.pk
    operator_client.post("/admin/payments/channelaccount/health/", {"account": a.pk, "action": "open"})
    assert breaker.breaker_store().states([a.pk], 0.0)[a.pk] == "forced_open"
    decision = channel_choice.channels_rank(request=request)
    assert a.pk not in decision.ranked and decision.ranked[0] == b.pk
    operator_client.post("/admin/payments/channelaccount/health/", {"account": a.pk, "action": "auto"})
    assert channel_choice.channels_rank(request=request).ranked[0] == a.pk
