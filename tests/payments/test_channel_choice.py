"""Routing as wired to the database and the shared health: operators' rules and limits, and the feedback
loop from create failures to the breaker and back."""

import time
from datetime import date

import pytest
import time_machine

from core.models import Merchant
from payments import health
from payments.models import RoutingRule, RoutingSettings
from payments.routing import RoutingRequest
from payments.services import channel_choice
from tests.factories.payments import EpayAccountFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def accounts():
    RoutingSettings.objects.create(exploration_share=0.0, small_below_minor=None, large_above_minor=None)
    return EpayAccountFactory(priority=1), EpayAccountFactory(priority=2), EpayAccountFactory(priority=3)


def _rank(amount=990, merchant_id=None, product_ref="gift"):
    request = RoutingRequest(
        amount_minor=amount, currency="CNY", method="alipay", merchant_id=merchant_id, product_ref=product_ref
    )
    return channel_choice.channels_rank(request=request)


def test_product_exclusion_and_merchant_pin_from_the_admin_tables(accounts):
    a, b, c = accounts
    merchant = Merchant.objects.create(name="M", slug="m")
    assert _rank().ranked == (a.pk, b.pk, c.pk)
    RoutingRule.objects.create(kind="exclude", account=a, product_ref="gift")
    RoutingRule.objects.create(kind="pin", account=c, merchant=merchant)
    channel_choice.cache_clear()  # what the admin does on save
    assert _rank().ranked == (b.pk, c.pk)  # another merchant: only the product exclusion applies
    pinned = _rank(merchant_id=merchant.pk)
    assert pinned.ranked == (c.pk,) and pinned.approach == "pinned"
    assert _rank(product_ref="other").ranked == (a.pk, b.pk, c.pk)


def test_amount_limits_and_daily_cap(accounts):
    a, b, c = accounts
    a.max_amount_minor, b.daily_cap_minor = 5000, 10000
    a.save()
    b.save()
    channel_choice.cache_clear()
    assert _rank(amount=6000).ranked == (b.pk, c.pk)
    health.health_store().record_volume(b.pk, 9000, date.today())  # 9,000 paid today: 6,000 more breaks the cap
    reasons = {c["id"]: c["reason"] for c in _rank(amount=6000).explain()["candidates"]}
    assert reasons[a.pk] == "above_max" and reasons[b.pk] == "daily_cap" and reasons[c.pk] == ""


def test_create_failures_open_the_breaker_then_probes_bring_the_account_back(accounts):
    a, b, _c = accounts
    for _ in range(5):
        channel_choice.create_outcome_record(account_id=a.pk, ok=False, latency_ms=50.0)
    decision = _rank()
    assert a.pk not in decision.ranked
    assert {c["id"]: c["reason"] for c in decision.explain()["candidates"]}[a.pk] == "breaker_open"
    with time_machine.travel(time.time() + 31, tick=False):  # cooled down: half-open, some traffic probes
        probes = sum(_rank().approach == "probe" for _ in range(400))
        assert 15 <= probes <= 70  # 10 % probe share
        for _ in range(3):  # three probes come back fine: closed again
            channel_choice.create_outcome_record(account_id=a.pk, ok=True, latency_ms=50.0)
        # Closed again: it is back among the candidates, behind the accounts without failures.
        decision = _rank()
        assert {c["id"]: c["reason"] for c in decision.explain()["candidates"]}[a.pk] == ""
        assert decision.ranked[0] != a.pk
        assert a.pk in _rank().ranked
