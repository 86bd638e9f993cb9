"""Shared fixtures: the epay simulator over real HTTP, a seeded product, and the PostgreSQL guard."""

from __future__ import annotations

import os
import threading

import celery.result
import pytest
from django.db import connection

from cardshop.models import DeliveryKind, Product
from core.models import Merchant
from payments.models import ChannelAccount
from payments.simulators.epay import EpaySimulator
from tests.factories.cardshop import ProductFactory
from tests.factories.core import MerchantFactory
from tests.factories.payments import EpayAccountFactory

# Celery's eager mode (the tests run tasks with CELERY_TASK_ALWAYS_EAGER) marks "inside a task" in one
# process-wide flag, saved and restored around each eager run. With a live server, eager tasks run in two threads
# at once (the test's own, and the server's for a provider's callback, e.g. a refund notify that now queues the
# refund mail), and the interleaved save/restore can leave the flag set for good: every later `.delay().get()`
# in the run then fails with "Never call result.get() within a task!". Kept per thread, as it means in a worker.
_join_will_block = threading.local()


def _task_join_will_block() -> bool:
    return getattr(_join_will_block, "value", False)


def _set_task_join_will_block(blocks: bool) -> None:
    _join_will_block.value = blocks


celery.result.task_join_will_block = _task_join_will_block
celery.result._set_task_join_will_block = _set_task_join_will_block


@pytest.fixture
def require_postgres(db):
    """Tests that prove concurrency need real PostgreSQL: under CI they fail loudly instead of skipping."""
    if connection.vendor != "postgresql":
        message = "this test needs PostgreSQL: set DATABASE_URL=postgres://..."
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def require_redis(settings):
    """Tests of shared state across processes need the real Redis cache; under CI its absence fails."""
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        message = "this test needs Redis: set REDIS_URL=redis://..."
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def epay_sim():
    sim = EpaySimulator().start()
    yield sim
    sim.stop()


@pytest.fixture
def epay_account(db, epay_sim) -> ChannelAccount:
    account = EpayAccountFactory(base_url=epay_sim.base_url)
    epay_sim.add_merchant(account.merchant_no, account.credentials_dict()["key"])
    return account


@pytest.fixture
def merchant(db) -> Merchant:
    return MerchantFactory()


def make_product(merchant: Merchant, *, secrets_count: int = 5, kind: str = DeliveryKind.UNIQUE, **kw) -> Product:
    return ProductFactory(merchant=merchant, delivery_kind=kind, secrets_count=secrets_count, **kw)


@pytest.fixture
def product(merchant, epay_account) -> Product:
    """A CNY product on sale, with the epay account that takes CNY (checkout refuses a currency no channel serves)."""
    return make_product(merchant, secrets_count=5)


@pytest.fixture
def public_url(settings, live_server):
    """Point notify/return URLs at the live test server so the simulator can call back."""
    settings.CARDSHOP_PUBLIC_URL = live_server.url
    return live_server.url


@pytest.fixture(autouse=True)
def routing_state_fresh():
    """Each test starts with no channel health, closed breakers and no cached accounts or knobs: account ids
    are reused across tests, and a breaker opened by one test must not steer the next one's payments."""
    from payments import breaker, health
    from payments.services import channel_choice

    def clear() -> None:
        channel_choice.cache_clear()
        health._stores.clear()
        breaker._stores.clear()
        if os.environ.get("REDIS_URL"):  # the real one (a test may point settings at a dead Redis)
            import redis

            client = redis.Redis.from_url(os.environ["REDIS_URL"])
            for pattern in ("cs:health:*", "cs:breaker:*"):
                keys = list(client.scan_iter(pattern, count=1000))
                if keys:
                    client.delete(*keys)
            client.close()

    clear()
    yield
    clear()


@pytest.fixture(autouse=True)
def risk_state_fresh():
    """Each test starts with risk's counters empty and its configuration read afresh: a checkout counted by one
    test must not push the next one's buyer over a rule."""
    from cardshop.services.risk_request import shop_caches_clear
    from risk import features, services

    def clear() -> None:
        services.risk_caches_clear(here_only=True)
        shop_caches_clear()
        for store in features._stores.values():
            if isinstance(store, features.MemoryCounters):
                store.clear()
        if os.environ.get("REDIS_URL"):
            import redis

            client = redis.Redis.from_url(os.environ["REDIS_URL"])
            keys = list(client.scan_iter(f"{features.PREFIX}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()

    clear()
    yield
    clear()
