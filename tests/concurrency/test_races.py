"""Proof 3 on real PostgreSQL: threads on separate connections, released together by a barrier."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.core import mail
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from cardshop.locks import card_secrets_free_locked
from cardshop.models import CardSecret, Order, OrderState, SecretStatus
from cardshop.services.checkout import order_create, order_payment_start
from cardshop.services.orders import payment_notification_handle
from core.errors import DomainError
from payments.models import Payment, PaymentStatus, ProviderNotification
from tests.cardshop.helpers import as_lists, buy, signed_notify
from tests.conftest import make_product

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def race(n: int, work: Callable[[int], object]) -> list[object]:
    """Run work(i) in n threads that start together; each thread uses (and closes) its own connection."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except Exception as exc:  # collected and asserted by the caller
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_fifty_buyers_race_for_the_last_ten_secrets(require_postgres, merchant, epay_account):
    product = make_product(merchant, secrets_count=10, max_quantity=1)

    def buy(i: int) -> str:
        order = order_create(
            product_id=product.pk,
            quantity=1,
            email=f"racer{i}@example.com",
            query_password="secret1",
            buyer_ip=f"10.1.0.{i}",
        )
        return order.order_no

    results = race(50, buy)
    won = [r for r in results if isinstance(r, str)]
    lost = [r for r in results if isinstance(r, DomainError)]
    assert len(won) == 10
    assert len(lost) == 40 and {e.code for e in lost} == {"out_of_stock"}
    assert Order.objects.count() == 10  # losers left no order behind
    holders = Counter(CardSecret.objects.values_list("order_id", flat=True))
    assert len(holders) == 10 and set(holders.values()) == {1}  # every secret in exactly one order
    assert CardSecret.objects.filter(status=SecretStatus.RESERVED).count() == 10


def test_same_notify_twenty_times_at_once_delivers_once(require_postgres, product, epay_account, epay_sim, settings):
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    order = buy(product, qty=2, email="once@example.com", ip=None)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    params = as_lists(signed_notify(epay_sim, payment.out_trade_no))

    results = race(20, lambda i: payment_notification_handle(channel_code="epay", params=params, body=b""))
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []
    assert all(r.ack_body == "success" for r in results)
    assert sum(r.newly_succeeded for r in results) == 1
    assert sum(r.duplicate for r in results) == 19
    order.refresh_from_db()
    assert order.state == OrderState.DELIVERED
    assert ProviderNotification.objects.count() == 1
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    assert CardSecret.objects.filter(order=order, status=SecretStatus.SOLD).count() == 2
    assert list(order.events.values_list("kind", flat=True)) == ["created", "paid", "delivered"]
    assert len(mail.outbox) == 1


def test_reservation_sql_locks_and_skips_locked_rows(require_postgres, product):
    from django.db import transaction

    with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
        card_secrets_free_locked(product_id=product.pk, count=2)
    sql = ctx.captured_queries[-1]["sql"]
    assert 'FOR UPDATE OF "cardshop_cardsecret" SKIP LOCKED' in sql


def test_one_buyer_racing_ten_checkouts_gets_only_the_cap(require_postgres, merchant, epay_account, settings):
    settings.CARDSHOP_MAX_PENDING_PER_BUYER = 3
    product = make_product(merchant, secrets_count=20, max_quantity=1)

    def buy(i: int) -> str:
        # Same email from ten IPs at once: the cap must hold exactly, not just usually.
        return order_create(
            product_id=product.pk,
            quantity=1,
            email="hoarder@example.com",
            query_password="secret1",
            buyer_ip=f"10.3.0.{i}",
        ).order_no

    results = race(10, buy)
    assert len([r for r in results if isinstance(r, str)]) == 3
    assert {r.code for r in results if isinstance(r, DomainError)} == {"too_many_pending"}
    assert Order.objects.count() == 3


def test_ten_operators_refund_the_same_order_at_once_refunds_once(
    require_postgres, product, epay_account, epay_sim, settings
):
    from cardshop.services.refunds import order_refund_request, refund_sync
    from payments.models import Refund, RefundStatus

    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    order = buy(product, email="refund@example.com", ip=None)
    payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1")
    epay_sim.pay(payment.out_trade_no)  # paid at the provider (its notify to port 9 is lost)
    payment_notification_handle(
        channel_code="epay", params=as_lists(signed_notify(epay_sim, payment.out_trade_no)), body=b""
    )

    results = race(10, lambda i: order_refund_request(order_no=order.order_no, actor=f"op{i}"))
    views = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, DomainError)]
    assert len(views) + len(refused) == 10, results  # nothing else went wrong
    assert len({v.refund_no for v in views}) == 1  # every request that got through got the same refund
    assert Refund.objects.count() == 1
    # Eager submit tasks ran on commit in whichever threads got through; once more changes nothing.
    refund_no = views[0].refund_no
    assert refund_sync(refund_no=refund_no) == RefundStatus.SUCCEEDED
    assert Refund.objects.get().status == RefundStatus.SUCCEEDED
    assert [r["out_refund_no"] for r in epay_sim._refunds.values() if r["out_trade_no"] == payment.out_trade_no] == [
        refund_no
    ]
    order.refresh_from_db()
    assert order.state == OrderState.REFUNDED
    assert list(order.events.filter(kind__startswith="refund").values_list("kind", flat=True)) == [
        "refund_requested",
        "refunded",
    ]


def test_two_tabs_opening_the_pay_page_at_once_make_one_trade(
    require_postgres, product, epay_account, epay_sim, settings
):
    """Issue 9 point 3: a slow provider keeps the first create in flight while the other tabs arrive; they
    are shown that payment (still being created), never a second trade of their own."""
    settings.CARDSHOP_PUBLIC_URL = "http://127.0.0.1:9"
    order = buy(product)
    epay_sim.faults.delay = 0.6
    try:
        results = race(4, lambda i: order_payment_start(order_no=order.order_no, client_ip="10.0.0.1"))
    finally:
        epay_sim.faults.delay = 0.0
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({r.out_trade_no for r in results}) == 1
    payments = Payment.objects.filter(reference=order.order_no)
    assert payments.count() == 1 and payments.get().status == PaymentStatus.PENDING
    with epay_sim._lock:  # what the provider holds for this merchant: one trade
        trades = [t for (pid, _), t in epay_sim._by_out.items() if pid == epay_account.merchant_no]
    assert len(trades) == 1


def test_a_refund_callback_racing_the_refund_answer_reads_the_refund_under_the_lock(require_postgres, merchant):
    """WeChat's refund callback names no order: the refund is looked up first, then its payment locked. While it
    waited for that lock the refund's own answer was applied: the refund must be read again under the lock (a
    stale copy failed the callback with ConcurrentTransition, and WeChat had to send it again)."""
    import json

    from django.db import transaction

    from payments.facade import refund_execute, refund_request, refund_result_apply
    from payments.locks import payment_qs_locked
    from payments.models import ChannelAccount, Refund, RefundStatus
    from payments.simulators.wechatpay import WechatPaySimulator

    sim = WechatPaySimulator().start()
    try:
        acct = sim.account()
        ChannelAccount.objects.create(
            code="wechatpay",
            name="wechat",
            merchant_no=acct.merchant_no,
            base_url=acct.base_url,
            credentials=json.dumps(acct.credentials),
        )
        order = buy(make_product(merchant, secrets_count=2), ip=None)
        payment = order_payment_start(order_no=order.order_no, client_ip="10.0.0.1", method="wxpay")
        sim.faults.drop_notify = 1
        sim.pay(payment.out_trade_no)
        paid = sim.notify_request(payment.out_trade_no)
        payment_notification_handle(channel_code="wechatpay", params={}, body=paid.body, headers=paid.headers)
        with transaction.atomic():
            refund = refund_request(reference=order.order_no, reason="race", requested_by="test")
        answer = refund_execute(refund_no=refund.refund_no, notify_url="http://127.0.0.1:9/")
        callback = sim.refund_notify_request(refund.refund_no)
        locked = threading.Event()

        def answer_applied(i: int):
            if i == 0:  # holds the payment while the callback reads the refund, then applies the answer
                with transaction.atomic():
                    payment_qs_locked().get(out_trade_no=payment.out_trade_no)
                    locked.set()
                    threading.Event().wait(0.5)
                    return refund_result_apply(refund_no=refund.refund_no, observation=answer).status
            locked.wait(10)
            return payment_notification_handle(
                channel_code="wechatpay", params={}, body=callback.body, headers=callback.headers
            ).ack_status

        results = race(2, answer_applied)
    finally:
        sim.stop()
    assert [r for r in results if isinstance(r, Exception)] == []
    assert Refund.objects.get(refund_no=refund.refund_no).status == RefundStatus.SUCCEEDED
