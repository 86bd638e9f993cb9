"""Issue 12, reconciliation (first slice: the matcher): a day of our records against a statement with one injected
discrepancy of each type finds each with its type and nothing else, and running the day again changes nothing."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import transaction

from core.models import AuditEvent
from core.money import Money
from payments.channels.base import Statement, StatementKind, StatementLine, StatementTotals
from settlement import facade
from settlement.checks import ledger_check
from settlement.models import LedgerTransaction, ReconException, ReconRun
from settlement.reconciliation import reconcile_statement
from tests.factories.core import MerchantFactory
from tests.factories.payments import EpayAccountFactory, PaymentFactory, RefundFactory
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 20)


def at(hour: int, minute: int = 0) -> datetime:
    return datetime.combine(DAY, time(hour, minute), tzinfo=ZoneInfo(settings.TIME_ZONE))


@pytest.fixture
def day():
    """120 paid trades of one account that day (fee 6 booked each) and 3 final refunds."""
    account = EpayAccountFactory()
    merchant = MerchantFactory()
    FeePlanFactory(merchant=merchant)
    payments = []
    for i in range(120):
        paid_at = at(23, 55) if i == 119 else at(9) + timedelta(minutes=i)  # the last one close to midnight
        p = PaymentFactory(
            account=account, status="succeeded", succeeded_at=paid_at, amount_minor=999, provider_trade_no=f"T{i:04d}"
        )
        with transaction.atomic():
            facade.sale_post(
                out_trade_no=p.out_trade_no,
                order_no=p.reference,
                merchant_id=merchant.pk,
                gross_minor=999,
                currency="CNY",
                channel_account_id=account.pk,
                channel_fee_minor=6,
                paid_at=paid_at,
            )
        payments.append(p)
    refunds = [
        RefundFactory(
            payment=payments[i], status="succeeded", succeeded_at=at(15), amount_minor=999, provider_refund_no=f"R{i}"
        )
        for i in (60, 61, 62)
    ]
    return account, payments, refunds


def statement_of(payments, refunds, *, edit=None, totals_off=0) -> Statement:
    lines = [
        StatementLine(
            kind=StatementKind.PAYMENT,
            provider_ref=p.provider_trade_no,
            our_ref=p.out_trade_no,
            amount=Money(999, "CNY"),
            fee=Money(6, "CNY"),
            status="TRADE_SUCCESS",
            occurred_at=p.succeeded_at,
            line_no=n,
        )
        for n, p in enumerate(payments, 1)
    ] + [
        StatementLine(
            kind=StatementKind.REFUND,
            provider_ref=r.provider_refund_no,
            our_ref=r.refund_no,
            amount=Money(999, "CNY"),
            fee=Money(0, "CNY"),
            status="REFUND",
            occurred_at=r.succeeded_at,
            trade_ref=r.payment.provider_trade_no,
        )
        for r in refunds
    ]
    lines = edit(lines) if edit else lines
    amount = sum(-x.amount.amount_minor if x.kind == StatementKind.REFUND else x.amount.amount_minor for x in lines)
    fee = sum(x.fee.amount_minor for x in lines)
    return Statement(
        day=DAY,
        lines=iter(lines),
        totals=StatementTotals(count=len(lines), amount=Money(amount + totals_off, "CNY"), fee=Money(fee, "CNY")),
        source_hash="ab" * 32,
    )


def found(run):
    return sorted((e.kind, e.our_ref or e.provider_ref) for e in ReconException.objects.filter(run=run))


def test_a_clean_day_matches_every_line(day):
    account, payments, refunds = day

    run = reconcile_statement(channel_account_id=account.pk, day=DAY, statement=statement_of(payments, refunds))

    assert (run.state, run.lines_seen, run.matched, run.exception_count) == ("done", 123, 123, 0)
    assert run.source_hash == "ab" * 32


def test_each_injected_discrepancy_is_found_with_its_type_and_nothing_else(day):
    account, payments, refunds = day
    p = payments

    def inject(lines):
        by_ref = {x.our_ref: x for x in lines}
        swap = {
            p[20].out_trade_no: dict(amount=Money(1000, "CNY")),  # amount
            p[30].out_trade_no: dict(amount=Money(999, "USD"), fee=Money(6, "USD")),  # currency
            p[40].out_trade_no: dict(fee=Money(7, "CNY")),  # fee
        }
        out = [x if x.our_ref not in swap else StatementLine(**{**x.__dict__, **swap[x.our_ref]}) for x in lines]
        out = [x for x in out if x.our_ref not in (p[10].out_trade_no, p[119].out_trade_no)]  # missing / timing
        out.append(by_ref[p[50].out_trade_no])  # duplicate
        out.append(  # a trade we never heard of: a lost callback
            StatementLine(
                kind=StatementKind.PAYMENT,
                provider_ref="T9999",
                our_ref="P-LOST",
                amount=Money(999, "CNY"),
                fee=Money(6, "CNY"),
                status="TRADE_SUCCESS",
                occurred_at=at(12),
            )
        )
        return out

    run = reconcile_statement(
        channel_account_id=account.pk, day=DAY, statement=statement_of(payments, refunds, edit=inject, totals_off=1)
    )

    assert found(run) == sorted(
        [
            ("amount", p[20].out_trade_no),
            ("currency", p[30].out_trade_no),
            ("fee", p[40].out_trade_no),
            ("missing_at_channel", p[10].out_trade_no),
            ("timing", p[119].out_trade_no),  # five minutes before midnight: may be on the next day's file
            ("duplicate", p[50].out_trade_no),
            ("missing_in_ledger", "P-LOST"),
            ("control_totals", ""),
        ]
    )
    fee = ReconException.objects.get(run=run, kind="fee")
    assert (fee.detail["booked_fee_minor"], fee.detail["statement_fee_minor"]) == (6, 7)
    # The channel kept one fen more than booked: posted as an adjustment, and routing learns the day's rate.
    assert fee.status == "resolved" and fee.detail["resolution"].startswith("adjusted")
    adjusted = LedgerTransaction.objects.get(idempotency_key=f"recon_fee:{run.pk}:{p[40].out_trade_no}")
    assert sorted((e.account.kind, e.amount_minor) for e in adjusted.entries.all()) == [
        ("channel_clearing", -1),
        ("channel_fee_expense", 1),
    ]
    account.refresh_from_db()
    assert account.fee_rate_bp == 60  # 6 fen on 9.99 yuan, on almost every line
    assert AuditEvent.objects.filter(action="channel_account.fee_learned").count() == 1
    # Still balanced (the day's refunds are factory rows, never booked through the refund path).
    assert [x.code for x in ledger_check().problems if x.code != "refund_unposted"] == []
    amount = ReconException.objects.get(run=run, kind="amount")
    assert (amount.expected_minor, amount.actual_minor) == (999, 1000)
    assert run.exception_count == 8

    again = reconcile_statement(
        channel_account_id=account.pk, day=DAY, statement=statement_of(payments, refunds, edit=inject, totals_off=1)
    )
    assert again.pk == run.pk and ReconException.objects.count() == 8 and ReconRun.objects.count() == 1


def test_a_statement_that_breaks_midway_fails_the_run_and_the_day_runs_again(day):
    account, payments, refunds = day

    def broken():
        good = statement_of(payments, refunds)
        for n, line in enumerate(good.lines):
            if n == 50:
                raise ValueError("truncated file")
            yield line

    with pytest.raises(ValueError):
        reconcile_statement(
            channel_account_id=account.pk, day=DAY, statement=Statement(day=DAY, lines=broken(), totals=None)
        )
    assert ReconRun.objects.get().state == "failed"

    run = reconcile_statement(channel_account_id=account.pk, day=DAY, statement=statement_of(payments, refunds))
    assert (run.state, run.exception_count) == ("done", 0)


def test_a_refund_the_provider_paid_out_that_we_hold_open_is_a_status_difference(day):
    account, payments, refunds = day
    pending = RefundFactory(payment=payments[70], status="pending", amount_minor=999, provider_refund_no="R70")

    def with_pending_refund(lines):
        return [
            *lines,
            StatementLine(
                kind=StatementKind.REFUND,
                provider_ref="R70",
                our_ref=pending.refund_no,
                amount=Money(999, "CNY"),
                fee=Money(0, "CNY"),
                status="REFUND",
                occurred_at=at(16),
                trade_ref=payments[70].provider_trade_no,
            ),
        ]

    run = reconcile_statement(
        channel_account_id=account.pk, day=DAY, statement=statement_of(payments, refunds, edit=with_pending_refund)
    )

    gap = ReconException.objects.get(run=run)
    assert (gap.kind, gap.our_ref, gap.detail["ours_status"]) == ("status", pending.refund_no, "pending")
