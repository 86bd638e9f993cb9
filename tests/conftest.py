"""Shared fixtures: the epay simulator over real HTTP, a seeded product, and the PostgreSQL guard."""

from __future__ import annotations

import os
import secrets

import pytest
from django.db import connection

from cardshop.models import DeliveryKind, Product
from cardshop.services.stock import card_secrets_import
from core.models import Merchant
from payments.models import ChannelAccount
from payments.simulators.epay import EpaySimulator


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
    pid = str(10000 + secrets.randbelow(89999))
    key = secrets.token_hex(16)
    epay_sim.add_merchant(pid, key)
    return ChannelAccount.objects.create(
        code="epay", name="epay test", merchant_no=pid, base_url=epay_sim.base_url, credentials=f'{{"key": "{key}"}}'
    )


@pytest.fixture
def merchant(db) -> Merchant:
    return Merchant.objects.create(name="Test Merchant", slug=f"m-{secrets.token_hex(4)}")


def make_product(merchant: Merchant, *, secrets_count: int = 5, kind: str = DeliveryKind.UNIQUE, **kw) -> Product:
    defaults = {"name": "Gift code", "price_minor": 990, "currency": "CNY", "max_quantity": 5}
    defaults.update(kw)
    product = Product.objects.create(
        merchant=merchant, slug=f"p-{secrets.token_hex(4)}", delivery_kind=kind, **defaults
    )
    if secrets_count:
        card_secrets_import(
            product_id=product.pk, text="\n".join(f"CODE-{i:04d}-{secrets.token_hex(4)}" for i in range(secrets_count))
        )
    return product


@pytest.fixture
def product(merchant) -> Product:
    return make_product(merchant, secrets_count=5)


@pytest.fixture
def public_url(settings, live_server):
    """Point notify/return URLs at the live test server so the simulator can call back."""
    settings.CARDSHOP_PUBLIC_URL = live_server.url
    return live_server.url
