"""Query budgets on the hot paths: checkout and the paying notify (one durable transaction each)."""

import pytest
from django.db import connection

from cardshop.services.checkout import order_create, order_payment_start
from cardshop.services.orders import payment_notification_handle
from tests.cardshop.helpers import as_lists, buy, signed_notify

pytestmark = pytest.mark.django_db


def test_checkout_query_budget(product, django_assert_max_num_queries):
    # The first checkout of a process reads risk's settings, lists and live rules (then cached a few seconds).
    order_create(product_id=product.pk, quantity=1, email="w@example.com", query_password="secret1", buyer_ip=None)
    # 9 statements and, inside the test's transaction, the durable block's savepoint and its release. The 9: the
    # product; risk's 2 (what only the shop knows, in one statement, and the assessment's row); the buyer locks of
    # the email and the IP group (one statement on PostgreSQL); the pending cap's counts (one); the free codes locked;
    # the order; the codes held; the created event.
    with django_assert_max_num_queries(11):
        order_create(
            product_id=product.pk, quantity=2, email="q@example.com", query_password="secret1", buyer_ip="10.0.0.1"
        )


def _paid(product, epay_sim, email):
    order = buy(product, qty=2, email=email, ip=None)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    return as_lists(signed_notify(epay_sim, payment.out_trade_no))


def test_paying_notify_query_budget(product, epay_account, epay_sim, settings, django_assert_max_num_queries):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    # The merchant's and the channel's ledger accounts are created by their first sale (a few statements each,
    # once in the shop's life); the budget is that of every sale after it.
    assert payment_notification_handle(channel_code="epay", params=_paid(product, epay_sim, "w@example.com"), body=b"")
    params = _paid(product, epay_sim, "q@example.com")
    # 9 statements + the test savepoint pair, and the ledger's: the sale's terms (plan, agent chain and accounts in
    # one read; the fee facts come with the outcome), then its transaction, entries and release row, one statement
    # on PostgreSQL (settlement.writes), three on SQLite; no savepoint and no lookup first (ON CONFLICT DO NOTHING).
    with django_assert_max_num_queries(13 if connection.vendor == "postgresql" else 15):
        assert payment_notification_handle(channel_code="epay", params=params, body=b"").newly_succeeded
    with django_assert_max_num_queries(4):  # a replay stops at the inbox
        assert payment_notification_handle(channel_code="epay", params=params, body=b"").duplicate
