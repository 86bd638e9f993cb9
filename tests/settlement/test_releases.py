"""Releases: a T+1 sale's pending money reaches available on the next working day of the operator's calendar (a
weekend, National Day, a make-up Saturday), the reserve after its days; each release is one posting, once."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction

from cardshop.celery import app
from settlement import facade
from settlement.models import LedgerTransaction, SaleRelease
from settlement.tasks import releases_due_task
from tests.factories.core import MerchantFactory
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.fixture
def merchant():
    merchant = MerchantFactory()  # no agent: the level shares go to the platform
    FeePlanFactory(merchant=merchant)  # T+1, reserve 1000 bp for 7 days
    return merchant


def sale(merchant, paid_at, out_trade_no="P1"):
    with transaction.atomic():
        return facade.sale_post(
            out_trade_no=out_trade_no,
            order_no=f"O-{out_trade_no}",
            merchant_id=merchant.pk,
            gross_minor=999,
            currency="CNY",
            channel_account_id=77,
            channel_fee_minor=6,
            paid_at=paid_at,
        )


def balances(merchant):
    b = facade.merchant_balances(merchant_id=merchant.pk, currency="CNY")
    return b.pending_minor, b.available_minor, b.reserve_minor, b.owed_minor


@pytest.mark.parametrize(
    ("paid", "released"),
    [
        ("2026-10-09 15:00", "2026-10-10 00:00"),  # Friday -> the make-up working Saturday after National Day
        ("2026-09-30 23:30", "2026-10-08 00:00"),  # the eve of National Day -> the first working day after it
    ],
)
def test_a_t1_sale_is_released_on_the_next_working_day(merchant, paid, released):
    merchant.fee_plans.update(reserve_days=30)  # only the pending money is due here
    view = sale(merchant, at(paid))
    release = SaleRelease.objects.get(sale_id=view.transaction_id)
    assert release.pending_due_at == at(released)

    assert facade.releases_due(now=at(released) - timedelta(seconds=1)) == 0
    assert balances(merchant) == (839, 0, 100, 0)

    assert facade.releases_due(now=at(released)) == 1

    posted = LedgerTransaction.objects.get(idempotency_key="release:sale:P1")
    assert posted.kind == "release" and posted.reference == "O-P1"
    assert {(e.account.kind, e.amount_minor) for e in posted.entries.all()} == {
        ("merchant_pending", 839),
        ("merchant_available", -839),
    }
    assert balances(merchant) == (0, 839, 100, 0)
    assert facade.releases_due(now=at(released) + timedelta(days=1)) == 0  # released once
    assert LedgerTransaction.objects.filter(kind="release").count() == 1


def test_the_reserve_is_released_after_its_days(merchant):
    sale(merchant, at("2026-10-09 15:00"))
    facade.releases_due(now=at("2026-10-12 09:00"))
    assert balances(merchant) == (0, 839, 100, 0)

    assert facade.releases_due(now=at("2026-10-16 14:59")) == 0
    assert facade.releases_due(now=at("2026-10-16 15:00")) == 1  # seven calendar days after the sale

    posted = LedgerTransaction.objects.get(idempotency_key="reserve_release:sale:P1")
    assert {(e.account.kind, e.amount_minor) for e in posted.entries.all()} == {
        ("merchant_reserve", 100),
        ("merchant_available", -100),
    }
    assert balances(merchant) == (0, 939, 0, 0)
    release = SaleRelease.objects.get()
    assert (release.pending_state, release.reserve_state) == ("released", "released")


def test_both_due_at_once_post_two_releases_and_pay_what_is_owed_first(merchant):
    sale(merchant, at("2026-10-09 15:00"))
    with transaction.atomic():  # an earlier refund left the merchant owing 9.00
        facade.adjustment_post(
            currency="CNY",
            lines=[
                facade_line(merchant, "merchant_owed", 900),
                facade_line(merchant, "merchant_pending", -900),
            ],
            reason="test: owed",
            actor="test",
        )

    assert facade.releases_due(now=at("2026-10-20 00:00")) == 2

    pending = LedgerTransaction.objects.get(idempotency_key="release:sale:P1")
    assert {(e.account.kind, e.amount_minor) for e in pending.entries.all()} == {
        ("merchant_pending", 839),
        ("merchant_owed", -839),  # all of it pays the debt
    }
    reserve = LedgerTransaction.objects.get(idempotency_key="reserve_release:sale:P1")
    assert {(e.account.kind, e.amount_minor) for e in reserve.entries.all()} == {
        ("merchant_reserve", 100),
        ("merchant_owed", -61),
        ("merchant_available", -39),
    }
    assert balances(merchant)[1:] == (39, 0, 0)


def facade_line(merchant, kind, amount):
    from settlement.contracts import AdjustmentLine

    return AdjustmentLine("merchant", merchant.pk, kind, amount)


def test_a_refunded_sale_is_never_released(merchant):
    sale(merchant, at("2026-10-09 15:00"))
    with transaction.atomic():
        facade.refund_post(
            refund_no="R1", out_trade_no="P1", amount_minor=999, currency="CNY", channel_returns_fee=True
        )

    assert facade.releases_due(now=at("2026-11-01 00:00")) == 0
    assert not LedgerTransaction.objects.filter(kind="release").exists()
    assert balances(merchant) == (0, 0, 0, 0)


def test_a_refund_after_the_release_takes_back_available(merchant):
    sale(merchant, at("2026-10-09 15:00"))
    facade.releases_due(now=at("2026-10-10 00:00"))
    with transaction.atomic():
        view = facade.refund_post(
            refund_no="R1", out_trade_no="P1", amount_minor=999, currency="CNY", channel_returns_fee=True
        )
    merchant_lines = {line.account_kind: line.amount_minor for line in view.lines if line.party_kind == "merchant"}
    assert merchant_lines == {"merchant_available": 839, "merchant_reserve": 100}
    assert balances(merchant) == (0, 0, 0, 0)
    assert facade.releases_due(now=at("2026-11-01 00:00")) == 0  # the reserve went back with the refund


def test_the_beat_task_is_scheduled_and_registered(merchant, time_machine):
    assert app.conf.beat_schedule["settlement-releases-due"]["task"] == "settlement.releases_due"
    assert "settlement.releases_due" in app.tasks and releases_due_task.name == "settlement.releases_due"
    sale(merchant, at("2026-10-09 15:00"))
    time_machine.move_to(at("2026-10-10 08:00"), tick=False)

    assert releases_due_task() == 1
    assert releases_due_task() == 0  # idempotent: released parts are never released again
