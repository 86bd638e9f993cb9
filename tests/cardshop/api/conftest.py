"""Two merchants, each with a product on sale and a key with every scope: merchant A calls, B is the neighbour."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from cardshop.models.merchant_api import ApiScope
from cardshop.services.checkout import order_payment_start
from cardshop.services.merchant_api import api_key_create
from tests.cardshop.helpers import signed_notify
from tests.conftest import make_product
from tests.factories.core import MerchantFactory


def key_for(merchant, scopes=None, **kw) -> str:
    made = api_key_create(merchant_id=merchant.pk, name="test", scopes=scopes or ApiScope.values, actor="test", **kw)
    return made.token


def paid_via_api(api, product, epay_sim, client) -> str:
    """An order made through the API, paid at the epay simulator and its notify handled: delivered. Its number."""
    order_no = api.post("/api/v1/orders/", {"product": product.pk, "email": "b@example.com"}, format="json").json()[
        "id"
    ]
    payment = order_payment_start(order_no=order_no, client_ip="10.0.0.1")
    epay_sim.pay(payment.out_trade_no)
    assert client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no)).content == b"success"
    return order_no


def client_for(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture(autouse=True)
def _api_rate(settings):
    settings.CARDSHOP_API_RATE = "100000/s"  # the rate has its own test; ids repeat across tests in one cache


@pytest.fixture
def shop_a(merchant, epay_account):
    return make_product(merchant, slug="a-code", secrets_count=3)


@pytest.fixture
def shop_b(db, epay_account):
    return make_product(MerchantFactory(slug="b-shop"), slug="b-code", secrets_count=3)


@pytest.fixture
def api(merchant) -> APIClient:
    return client_for(key_for(merchant))
