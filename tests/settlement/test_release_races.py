"""A sale's money is released or refunded, never both: the release row is locked by both (PostgreSQL, threads)."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, connections, transaction

from settlement import facade
from settlement.models import LedgerTransaction, SaleRelease
from tests.factories.core import MerchantFactory
from tests.factories.settlement import FeePlanFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SHANGHAI = ZoneInfo("Asia/Shanghai")
PAID = datetime(2026, 10, 9, 15, 0, tzinfo=SHANGHAI)
DUE = datetime(2026, 10, 20, 0, 0, tzinfo=SHANGHAI)  # pending and reserve both due


def _sale(merchant):
    with transaction.atomic():
        facade.sale_post(
            out_trade_no="P1",
            order_no="O1",
            merchant_id=merchant.pk,
            gross_minor=999,
            currency="CNY",
            channel_account_id=77,
            channel_fee_minor=6,
            paid_at=PAID,
        )


def _refund():
    return facade.refund_post(
        refund_no="R1", out_trade_no="P1", amount_minor=999, currency="CNY", channel_returns_fee=True
    )


def _in_thread(work, out):
    def run():
        try:
            out.append(work())
        except Exception as exc:  # asserted by the test
            out.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_until_someone_waits_on_a_lock():
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    pytest.fail("nobody waited on the lock")


def balances(merchant):
    b = facade.merchant_balances(merchant_id=merchant.pk, currency="CNY")
    return b.pending_minor, b.available_minor, b.reserve_minor, b.owed_minor


def test_a_release_skips_a_sale_whose_refund_is_in_flight_and_never_releases_it(require_postgres):
    merchant = MerchantFactory()
    FeePlanFactory(merchant=merchant)
    _sale(merchant)
    refunded, may_commit = threading.Event(), threading.Event()

    def refund():
        with transaction.atomic():
            view = _refund()
            refunded.set()
            assert may_commit.wait(timeout=30)
        return view

    out: list[object] = []
    thread = _in_thread(refund, out)
    assert refunded.wait(timeout=30)
    assert facade.releases_due(now=DUE) == 0  # the row is held: skipped, not waited on
    may_commit.set()
    thread.join(timeout=60)

    assert facade.releases_due(now=DUE) == 0  # and once refunded, there is nothing left to release
    assert not isinstance(out[0], Exception)
    assert not LedgerTransaction.objects.filter(kind="release").exists()
    assert balances(merchant) == (0, 0, 0, 0)


def test_a_refund_waits_for_a_release_in_flight_and_takes_the_money_from_available(require_postgres, monkeypatch):
    from settlement.services import releases

    merchant = MerchantFactory()
    FeePlanFactory(merchant=merchant)
    _sale(merchant)
    released, may_commit = threading.Event(), threading.Event()
    post_release = releases._release

    def release_then_pause(*args, **kwargs):  # the beat's release posted, not yet committed
        post_release(*args, **kwargs)
        if kwargs["account_kind"] == "merchant_reserve":
            released.set()
            assert may_commit.wait(timeout=30)

    monkeypatch.setattr(releases, "_release", release_then_pause)

    def refund():
        with transaction.atomic(durable=True):
            return _refund()

    out_release: list[object] = []
    out_refund: list[object] = []
    first = _in_thread(lambda: facade.releases_due(now=DUE), out_release)
    assert released.wait(timeout=30)
    second = _in_thread(refund, out_refund)
    _wait_until_someone_waits_on_a_lock()  # the refund waits on the release row
    may_commit.set()
    first.join(timeout=60)
    second.join(timeout=60)

    assert out_release == [2]
    view = out_refund[0]
    merchant_lines = {line.account_kind: line.amount_minor for line in view.lines if line.party_kind == "merchant"}
    assert merchant_lines == {"merchant_available": 939}  # both parts were released first: taken from available
    assert balances(merchant) == (0, 0, 0, 0)
    assert SaleRelease.objects.get().refund_key == "refund:R1"
