"""The dashboard's payment figures (payments.facade): outcomes per channel account, money per method, open refunds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.money import Money
from payments import breaker, facade
from payments.contracts import PaymentStatus, RefundStatus
from payments.models import Payment
from tests.factories.payments import EpayAccountFactory, PaymentFactory, RefundFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
P = PaymentStatus


def test_outcomes_count_the_window_and_leave_separate_collections_out():
    account = EpayAccountFactory(name="main", priority=1)
    idle = EpayAccountFactory(name="idle", priority=2, enabled=False)
    ok = PaymentFactory(account=account, status=P.SUCCEEDED, created_at=NOW - timedelta(hours=1), succeeded_at=NOW)
    PaymentFactory(account=account, status=P.REFUNDED, created_at=NOW - timedelta(hours=2), succeeded_at=NOW)
    PaymentFactory(account=account, status=P.UNKNOWN, created_at=NOW - timedelta(hours=3))
    PaymentFactory(account=account, status=P.FAILED, created_at=NOW - timedelta(hours=30))  # before the window
    PaymentFactory(account=account, status=P.FAILED, created_at=NOW + timedelta(minutes=1))  # after it
    # Money the provider took again on `ok`'s trade: not an attempt, not a sale.
    PaymentFactory(
        account=account, status=P.SUCCEEDED, collected_on=ok, created_at=NOW - timedelta(minutes=5), succeeded_at=NOW
    )
    breaker.breaker_store().force_close(account.pk)

    main, other = facade.payment_outcomes_by_channel(since=NOW - timedelta(hours=24), until=NOW)

    assert (main.account_name, main.enabled, main.breaker_state) == ("main", True, "forced_closed")
    assert (main.attempts, main.succeeded, main.failed, main.closed, main.open) == (3, 2, 0, 0, 1)
    assert (other.account_id, other.enabled, other.breaker_state, other.attempts) == (idle.pk, False, "closed", 0)
    assert [
        (t.method, t.payments, t.amount)
        for t in facade.payment_totals_by_method(since=NOW - timedelta(days=1), until=NOW)
    ] == [("alipay", 2, Money(1980, "CNY"))]
    assert Payment.objects.count() == 6  # read-only: nothing added or moved


def test_a_breaker_store_that_cannot_be_read_leaves_the_state_unknown(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    EpayAccountFactory()
    (row,) = facade.payment_outcomes_by_channel(since=NOW - timedelta(days=1), until=NOW)
    assert (row.breaker_state, row.attempts) == ("", 0)


def test_open_refunds_oldest_first_capped_with_the_total():
    account = EpayAccountFactory()
    made = []
    for i, status in enumerate([RefundStatus.REQUESTED, RefundStatus.PENDING, RefundStatus.UNKNOWN] * 2):
        made.append(RefundFactory(payment__account=account, payment__reference=f"T{i}", status=status))
    RefundFactory(payment__account=account, status=RefundStatus.SUCCEEDED)
    RefundFactory(payment__account=account, status=RefundStatus.FAILED)

    page = facade.refunds_open(limit=4)

    assert page.total == 6
    assert [r.refund_no for r in page.rows] == [r.refund_no for r in made[:4]]
    assert [r.reference for r in page.rows] == ["T0", "T1", "T2", "T3"]
    assert page.rows[0].amount == Money(990, "CNY") and page.rows[0].channel_code == "epay"
    assert facade.refunds_open(limit=10).total == 6
