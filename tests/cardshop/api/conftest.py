"""Two merchants, each with a product on sale and a key with every scope: merchant A calls, B is the neighbour."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook

from cardshop.models.merchant_api import ApiScope
from cardshop.services.checkout import order_payment_start
from cardshop.services.merchant_api import api_key_create
from cardshop.services.webhooks import webhook_events_publish
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


def money_for(merchant, account, *, paid_out: bool = True):
    """A T+0 sale of 9.99 booked for `merchant` (939 available) and, unless told not to, all of it paid out
    through `account`: ledger lines, a balance and a final payout, made by settlement's own services. The payout."""
    from payments.contracts import PayoutOutcome, PayoutResult
    from settlement.models import PayoutDestination
    from settlement.payouts import payout_create, payout_outcome_apply
    from tests.factories.settlement import FeePlanFactory
    from tests.settlement.test_payouts import sold

    FeePlanFactory(merchant=merchant, cycle="T+0", agent_commission_bp=[], reserve_bp=0, reserve_days=0)
    destination = PayoutDestination.objects.create(
        party_kind="merchant", party_id=merchant.pk, currency="CNY", channel_account=account,
        payee="shop-payee@example.com", payee_name="张三",
    )  # fmt: skip
    sold(merchant, account)
    payout = payout_create(destination_id=destination.pk)
    if paid_out:
        outcome = PayoutOutcome(result=PayoutResult.PAID, provider_payout_no="T1", provider_status="SUCCESS")
        payout_outcome_apply(payout_no=payout.payout_no, outcome=outcome)
    return payout


# --- webhooks: a merchant's receiver on loopback -------------------------------------------------------------------

ENDPOINTS = "/api/v1/webhook_endpoints/"


class Receiver:
    """A merchant's server on loopback: records every request and answers with the next code of `codes`."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict, bytes]] = []
        self.codes: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.codes.pop(0) if outer.codes else 200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verify_last(self, secret: str) -> dict:
        headers, body = self.requests[-1]
        return Webhook(secret).verify(body, headers)

    def verified(self, secret: str) -> list[dict]:
        """Every request as the standardwebhooks package reads it (it raises on a bad signature or timestamp)."""
        return [Webhook(secret).verify(body, headers) for headers, body in self.requests]


@pytest.fixture
def receiver(settings):
    settings.CARDSHOP_WEBHOOKS_ALLOW_PRIVATE = True  # the receiver is on loopback
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    r = Receiver()
    yield r
    r.server.shutdown()


def endpoint_for(api, url: str, **extra) -> dict:
    made = api.post(ENDPOINTS, {"url": url, **extra}, format="json")
    assert made.status_code == 201, made.json()
    return made.json()


def publish(capture) -> int:
    with capture(execute=True):  # the deliveries are handed to the (eager) worker after commit
        return webhook_events_publish()
