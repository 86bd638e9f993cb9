"""Two publishers on real PostgreSQL, each taking one of two deliveries of one product that both leave it low on
stock: the merchant is told once (issue 14, stock.low)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from cardshop.models import CardSecret, OrderEvent, SecretStatus, WebhookEvent
from cardshop.services.webhooks import webhook_events_publish
from tests.concurrency.test_races import race
from tests.conftest import make_product
from tests.factories.cardshop import OrderFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_two_publishers_announce_low_stock_once(require_postgres, merchant, epay_account, settings):
    settings.CARDSHOP_LOW_STOCK_THRESHOLD = 5
    product = make_product(merchant, secrets_count=4)  # already low: each delivery's check finds it so
    for _ in range(2):
        order = OrderFactory(product=product, state="delivered", paid_at=timezone.now())
        OrderEvent.objects.create(order=order, kind="delivered", webhook_pending=True)
    CardSecret.objects.filter(product=product).update(status=SecretStatus.AVAILABLE)

    made = race(2, lambda i: webhook_events_publish(limit=1))  # one outbox row each

    assert all(isinstance(n, int) for n in made), made
    assert WebhookEvent.objects.filter(type="order.delivered").count() == 2
    assert WebhookEvent.objects.filter(type="stock.low").count() == 1
