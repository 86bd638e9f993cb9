"""Proof 6: the invariant check (`settlement.checks.ledger_check`, `manage.py ledger_check`, the beat task) finds
drift introduced behind the posting service's back, and reports 0 problems on a clean ledger."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.utils import timezone

from cardshop.celery import app as celery_app
from cardshop.tasks import ledger_check_task
from core.parties import agent_create
from payments.models import PaymentStatus, RefundStatus
from settlement import facade
from settlement.checks import (
    BalanceRowDrift,
    CalendarUncovered,
    CurrencyUnbalanced,
    LedgerCheckRun,
    PaymentUnposted,
    PostingKindMismatch,
    PostingWithoutPayment,
    RefundUnposted,
    StaleSuspense,
    TransactionUnbalanced,
    ledger_check,
)
from settlement.ledger import Line, ledger_account, ledger_post
from settlement.models import LedgerAccount, LedgerTransaction
from tests.factories.core import MerchantFactory
from tests.factories.payments import PaymentFactory, RefundFactory
from tests.factories.settlement import FeePlanFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def merchant():
    top = agent_create(name="Regional")
    agent = agent_create(name="City", parent_id=top.pk)
    merchant = MerchantFactory(agent=agent)
    FeePlanFactory(merchant=merchant, cycle="T+0")  # T+0: the sale credits merchant available, a kept balance row
    return merchant


def paid_and_posted(merchant, *, gross=999):
    payment = PaymentFactory(status=PaymentStatus.SUCCEEDED, succeeded_at=timezone.now(), amount_minor=gross)
    with transaction.atomic():
        facade.sale_post(
            out_trade_no=payment.out_trade_no,
            order_no=payment.reference,
            merchant_id=merchant.pk,
            gross_minor=gross,
            currency="CNY",
            channel_account_id=payment.account_id,
            channel_fee_minor=6,
        )
    return payment


def suspense_posted(out_trade_no: str, amount: int = 500) -> LedgerTransaction:
    clearing = ledger_account(party_kind="channel_account", party_id=1, kind="channel_clearing", currency="CNY")
    suspense = ledger_account(party_kind="platform", party_id=0, kind="suspense", currency="CNY")
    with transaction.atomic():
        return ledger_post(
            key=f"suspense:{out_trade_no}",
            kind="suspense",
            reference="O-x",
            lines=[Line(clearing.pk, amount, "CNY"), Line(suspense.pk, -amount, "CNY")],
        )


def run_command(*args: str) -> tuple[str, int]:
    out = io.StringIO()
    try:
        call_command("ledger_check", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc.returncode
    return out.getvalue(), 0


def test_a_clean_ledger_reports_no_problems(merchant):
    paid_and_posted(merchant)
    paid_and_posted(merchant, gross=1990)

    result = ledger_check()

    assert result.problems == () and result.stale_suspense == () and result.ok
    # T+0 sales keep two balance rows for the merchant: available, and owed (netted first, zero here).
    assert result.counts == {"balance_rows": 2, "transactions": 2, "payments": 2, "refunds": 0}
    output, code = run_command()
    assert code == 0 and "ok: 0 problems" in output
    run = LedgerCheckRun.objects.get()
    assert (run.ok, run.problem_count, run.problems, run.counts["payments"]) == (True, 0, [], 2)


def test_an_empty_ledger_is_clean():
    assert ledger_check().problems == ()


def test_a_balance_row_changed_by_raw_sql_is_drift_and_the_command_exits_non_zero(merchant):
    paid_and_posted(merchant)
    available = LedgerAccount.objects.get(party_kind="merchant", party_id=merchant.pk, kind="merchant_available")
    assert available.balance_minor == 839
    with connection.cursor() as cursor:
        cursor.execute("UPDATE settlement_ledgeraccount SET balance_minor = 900 WHERE id = %s", [available.pk])

    result = ledger_check()

    assert result.problems == (
        BalanceRowDrift(
            account_id=available.pk, account=str(available), currency="CNY", kept_minor=900, entries_minor=839
        ),
    )
    output, code = run_command()
    assert code == 1
    assert f"DRIFT balance_row_drift: account_id={available.pk}" in output and "kept_minor=900" in output
    run = LedgerCheckRun.objects.get()
    assert (run.ok, run.problem_count) == (False, 1)
    assert run.problems == [
        {
            "code": "balance_row_drift",
            "account_id": available.pk,
            "account": str(available),
            "currency": "CNY",
            "kept_minor": 900,
            "entries_minor": 839,
        }
    ]


def test_a_raw_unbalanced_entry_is_found_per_transaction_and_per_currency(merchant):
    # The deferred trigger refuses this at COMMIT (and at the test's closing SET CONSTRAINTS): the drift lives in a
    # savepoint rolled back at the end, which is what SQLite (no trigger) or a dropped trigger would leave behind.
    payment = paid_and_posted(merchant)
    txn = LedgerTransaction.objects.get(idempotency_key=f"sale:{payment.out_trade_no}")
    revenue = LedgerAccount.objects.get(kind="platform_revenue")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO settlement_ledgerentry (transaction_id, account_id, amount_minor, currency)"
                " VALUES (%s, %s, %s, 'CNY')",
                [txn.pk, revenue.pk, -7],
            )

        problems = ledger_check().problems
        code = run_command()[1]
        transaction.set_rollback(True)

    assert problems == (
        CurrencyUnbalanced(currency="CNY", sum_minor=-7),
        TransactionUnbalanced(transaction_id=txn.pk, key=txn.idempotency_key, currency="CNY", sum_minor=-7, lines=8),
    )
    assert code == 1
    assert ledger_check().problems == ()


def test_a_succeeded_payment_without_its_sale_and_a_sale_without_its_payment_are_found(merchant):
    posted = paid_and_posted(merchant)
    unposted = PaymentFactory(status=PaymentStatus.SUCCEEDED, succeeded_at=timezone.now())
    refunded_unposted = PaymentFactory(status=PaymentStatus.REFUNDED, succeeded_at=timezone.now())
    PaymentFactory(status=PaymentStatus.PENDING, reference="T-open")  # took no money: needs no posting
    PaymentFactory(status=PaymentStatus.CLOSED)
    # The sale's payment row loses its success behind the ledger's back.
    type(posted).objects.filter(pk=posted.pk).update(status=PaymentStatus.PENDING, succeeded_at=None)
    sale = LedgerTransaction.objects.get(idempotency_key=f"sale:{posted.out_trade_no}")

    problems = ledger_check().problems

    assert set(problems) == {
        PaymentUnposted(out_trade_no=unposted.out_trade_no),
        PaymentUnposted(out_trade_no=refunded_unposted.out_trade_no),
        PostingWithoutPayment(transaction_id=sale.pk, key=sale.idempotency_key),
    }
    assert len(problems) == 3


def test_a_suspense_posting_counts_as_the_payments_posting(merchant):
    payment = PaymentFactory(status=PaymentStatus.SUCCEEDED, succeeded_at=timezone.now(), amount_minor=500)
    suspense_posted(payment.out_trade_no)

    assert ledger_check().problems == ()


def test_a_final_refund_needs_its_refund_posting(merchant):
    payment = paid_and_posted(merchant)
    refund = RefundFactory(payment=payment, amount_minor=999, status=RefundStatus.SUCCEEDED)
    RefundFactory(status=RefundStatus.PENDING)  # not final: no posting yet, no problem

    assert ledger_check().problems == (RefundUnposted(refund_no=refund.refund_no, out_trade_no=payment.out_trade_no),)

    clearing = LedgerAccount.objects.get(kind="channel_clearing")
    available = LedgerAccount.objects.get(kind="merchant_available")
    with transaction.atomic():
        ledger_post(
            key=f"refund:{refund.refund_no}",
            kind="refund",
            reference=payment.reference,
            lines=[Line(available.pk, 100, "CNY"), Line(clearing.pk, -100, "CNY")],
        )
    assert ledger_check().problems == ()


def test_a_keyed_posting_of_another_kind_is_found(merchant):
    payment = PaymentFactory(status=PaymentStatus.SUCCEEDED, succeeded_at=timezone.now(), amount_minor=500)
    clearing = ledger_account(party_kind="channel_account", party_id=1, kind="channel_clearing", currency="CNY")
    suspense = ledger_account(party_kind="platform", party_id=0, kind="suspense", currency="CNY")
    with transaction.atomic():
        txn = ledger_post(
            key=f"sale:{payment.out_trade_no}",
            kind="adjustment",
            reference="O-x",
            lines=[Line(clearing.pk, 500, "CNY"), Line(suspense.pk, -500, "CNY")],
        )

    assert ledger_check().problems == (
        PostingKindMismatch(transaction_id=txn.pk, key=txn.idempotency_key, kind="adjustment"),
    )


def test_suspense_older_than_the_setting_is_listed_until_it_is_sold_or_refunded(merchant, settings):
    settings.SETTLEMENT_SUSPENSE_MAX_DAYS = 7
    old = PaymentFactory(status=PaymentStatus.SUCCEEDED, succeeded_at=timezone.now(), amount_minor=500)
    fresh = PaymentFactory(status=PaymentStatus.SUCCEEDED, succeeded_at=timezone.now(), amount_minor=300)
    old_txn = suspense_posted(old.out_trade_no, 500)
    suspense_posted(fresh.out_trade_no, 300)
    now = timezone.now()

    assert ledger_check(now=now + timedelta(days=6)).stale_suspense == ()
    result = ledger_check(now=now + timedelta(days=8))
    assert result.problems == () and result.ok  # listed, not drift
    assert result.stale_suspense == (
        StaleSuspense(
            transaction_id=old_txn.pk,
            key=f"suspense:{old.out_trade_no}",
            out_trade_no=old.out_trade_no,
            amount_minor=500,
            currency="CNY",
            posted_at=old_txn.created_at.isoformat(),
            age_days=8,
        ),
        StaleSuspense(
            transaction_id=LedgerTransaction.objects.get(idempotency_key=f"suspense:{fresh.out_trade_no}").pk,
            key=f"suspense:{fresh.out_trade_no}",
            out_trade_no=fresh.out_trade_no,
            amount_minor=300,
            currency="CNY",
            posted_at=LedgerTransaction.objects.get(
                idempotency_key=f"suspense:{fresh.out_trade_no}"
            ).created_at.isoformat(),
            age_days=8,
        ),
    )
    assert [s.key for s in ledger_check(suspense_days=30, now=now + timedelta(days=8)).stale_suspense] == []

    # Delivered at last: a sale of the same trade moves it out of suspense.
    with transaction.atomic():
        facade.sale_post(
            out_trade_no=old.out_trade_no,
            order_no="O-x",
            merchant_id=merchant.pk,
            gross_minor=500,
            currency="CNY",
            channel_account_id=1,
            channel_fee_minor=3,
        )
    # And the other refunded.
    refund = RefundFactory(payment=fresh, amount_minor=300, status=RefundStatus.SUCCEEDED)
    clearing = LedgerAccount.objects.get(kind="channel_clearing")
    suspense = LedgerAccount.objects.get(kind="suspense")
    with transaction.atomic():
        ledger_post(
            key=f"refund:{refund.refund_no}",
            kind="refund",
            reference="O-x",
            lines=[Line(suspense.pk, 300, "CNY"), Line(clearing.pk, -300, "CNY")],
        )
    assert ledger_check(now=now + timedelta(days=8)).stale_suspense == ()


def test_the_check_is_a_few_queries_whatever_the_ledger_size(merchant, django_assert_max_num_queries):
    for _ in range(5):
        paid_and_posted(merchant)
    with django_assert_max_num_queries(9):  # 8, and one for the years held releases fall due in (the calendar)
        result = ledger_check()
    assert result.problems == () and result.counts["transactions"] == 5


def test_the_beat_runs_the_check_nightly_and_stores_each_run(merchant):
    entry = celery_app.conf.beat_schedule["ledger-check"]
    assert entry["task"] == "cardshop.ledger_check" == ledger_check_task.name
    assert (entry["schedule"].hour, entry["schedule"].minute) == ({3}, {30})
    paid_and_posted(merchant)
    PaymentFactory(status=PaymentStatus.SUCCEEDED, succeeded_at=timezone.now())

    assert ledger_check_task() == 1

    run = LedgerCheckRun.objects.get()
    assert (run.ok, run.problem_count, run.problems[0]["code"]) == (False, 1, "payment_unposted")
    assert run.finished_at >= run.started_at


def test_a_year_the_holiday_file_does_not_declare_is_a_notice_not_drift(tmp_path, settings):
    settings.SETTLEMENT_HOLIDAY_FILE = str(tmp_path / "holidays.txt")
    (tmp_path / "holidays.txt").write_text("year 2026\n2026-10-01 off National Day\n")
    merchant = MerchantFactory()
    FeePlanFactory(merchant=merchant, cycle="T+1")
    new_years_eve = timezone.make_aware(datetime(2026, 12, 31, 15, 0))
    payment = PaymentFactory(status=PaymentStatus.SUCCEEDED, succeeded_at=new_years_eve, amount_minor=999)
    with transaction.atomic():  # a T+1 sale on 31 December falls due in 2027
        facade.sale_post(
            out_trade_no=payment.out_trade_no,
            order_no=payment.reference,
            merchant_id=merchant.pk,
            gross_minor=999,
            currency="CNY",
            channel_account_id=payment.account_id,
            channel_fee_minor=6,
            paid_at=new_years_eve,
        )

    in_june = ledger_check(now=timezone.make_aware(datetime(2026, 6, 1)))
    in_december = ledger_check(now=new_years_eve)

    # Money is held into 2027, which the file does not declare; in December the coming year is named anyway.
    notice = CalendarUncovered(year=2027, held_releases=1, file=str(tmp_path / "holidays.txt"))
    assert in_june.notices == (notice,) and in_december.notices == (notice,)
    assert in_december.ok and in_december.problems == ()
    out = io.StringIO()
    call_command("ledger_check", stdout=out)
    assert "NOTICE the holiday file" in out.getvalue() and "does not declare 2027" in out.getvalue()
    assert LedgerCheckRun.objects.get().notices[0]["year"] == 2027

    (tmp_path / "holidays.txt").write_text("year 2026\nyear 2027\n2027-01-01 off New Year\n")
    assert ledger_check(now=new_years_eve).notices == ()


def test_from_december_the_coming_year_must_be_declared(tmp_path, settings):
    settings.SETTLEMENT_HOLIDAY_FILE = str(tmp_path / "holidays.txt")
    (tmp_path / "holidays.txt").write_text("year 2026\n")

    assert ledger_check(now=timezone.make_aware(datetime(2026, 11, 30))).notices == ()
    assert [n.year for n in ledger_check(now=timezone.make_aware(datetime(2026, 12, 1))).notices] == [2027]
    assert [n.year for n in ledger_check(now=timezone.make_aware(datetime(2027, 3, 1))).notices] == [2027]
