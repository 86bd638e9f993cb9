from __future__ import annotations

import pytest
from django.test import Client

from cardshop.models import OrderState
from cardshop.services.checkout import order_payment_start
from tests.cardshop.helpers import buy, signed_notify
from tests.operators.auth import operator_login, staff_user

# What a read-only operator holds: every page, no power.
VIEW_ONLY = (
    "cardshop.view_order",
    "cardshop.view_cardsecret",
    "cardshop.view_product",
    "payments.view_channelaccount",
    "payments.view_payment",
)


@pytest.fixture
def viewer(db) -> Client:
    return operator_login(Client(), staff_user("viewer", *VIEW_ONLY))


@pytest.fixture
def granted(db):
    """granted("cardshop.refund_order") -> a client of a staff login with view rights plus that one power."""

    def make(*perms: str) -> Client:
        return operator_login(
            Client(), staff_user("op-" + "-".join(p.split(".")[1] for p in perms), *VIEW_ONLY, *perms)
        )

    return make


@pytest.fixture
def paid_order(product, epay_account, epay_sim, settings, client):
    """A delivered order, paid through the epay simulator."""
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    order = buy(product)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    epay_sim.pay(payment.out_trade_no)
    assert client.get("/notify/epay/", signed_notify(epay_sim, payment.out_trade_no)).content == b"success"
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    return order
