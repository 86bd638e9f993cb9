"""Proof 2: what PostgreSQL itself refuses, whatever code (or a person with psql) tries."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from settlement.ledger import Line, ledger_account, ledger_post
from settlement.models import LedgerAccount, LedgerEntry, LedgerTransaction

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def two_accounts() -> tuple[LedgerAccount, LedgerAccount]:
    with transaction.atomic():
        clearing = ledger_account(party_kind="channel_account", party_id=1, kind="channel_clearing", currency="CNY")
        suspense = ledger_account(party_kind="platform", party_id=0, kind="suspense", currency="CNY")
    return clearing, suspense


def raw_transaction(cursor, key: str) -> int:
    cursor.execute(
        "INSERT INTO settlement_ledgertransaction (idempotency_key, kind, reference, memo, lines_digest, created_at)"
        " VALUES (%s, 'adjustment', '', 'raw', '', now()) RETURNING id",
        [key],
    )
    return cursor.fetchone()[0]


def raw_entry(cursor, txn_id: int, account_id: int, amount: int, currency: str = "CNY") -> None:
    cursor.execute(
        "INSERT INTO settlement_ledgerentry (transaction_id, account_id, amount_minor, currency) VALUES (%s, %s, %s, %s)",
        [txn_id, account_id, amount, currency],
    )


def posted() -> LedgerTransaction:
    clearing, suspense = two_accounts()
    with transaction.atomic():
        return ledger_post(
            key="suspense:P1",
            kind="suspense",
            reference="O1",
            lines=[Line(clearing.pk, 500, "CNY"), Line(suspense.pk, -500, "CNY")],
        )


def test_a_raw_unbalanced_insert_fails_at_commit(require_postgres):
    clearing, suspense = two_accounts()

    with pytest.raises(IntegrityError, match="does not sum to zero"):
        with transaction.atomic(), connection.cursor() as cursor:
            txn_id = raw_transaction(cursor, "raw:1")
            raw_entry(cursor, txn_id, clearing.pk, 500)
            raw_entry(cursor, txn_id, suspense.pk, -499)
            # Deferred: inside the transaction the lines may be incomplete; the check runs at COMMIT.

    assert not LedgerTransaction.objects.exists() and not LedgerEntry.objects.exists()


def test_a_raw_balanced_insert_commits(require_postgres):
    clearing, suspense = two_accounts()
    with transaction.atomic(), connection.cursor() as cursor:
        txn_id = raw_transaction(cursor, "raw:1")
        raw_entry(cursor, txn_id, clearing.pk, 500)
        raw_entry(cursor, txn_id, suspense.pk, -500)
    assert LedgerEntry.objects.filter(transaction_id=txn_id).count() == 2


def test_a_raw_line_in_another_currency_than_its_account_fails_at_commit(require_postgres):
    clearing, suspense = two_accounts()
    with pytest.raises(IntegrityError, match="currency"):
        with transaction.atomic(), connection.cursor() as cursor:
            txn_id = raw_transaction(cursor, "raw:1")
            raw_entry(cursor, txn_id, clearing.pk, 500, "USD")
            raw_entry(cursor, txn_id, suspense.pk, -500, "USD")
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE settlement_ledgerentry SET amount_minor = amount_minor * 2",
        "DELETE FROM settlement_ledgerentry",
        "UPDATE settlement_ledgertransaction SET memo = 'edited'",
        "DELETE FROM settlement_ledgertransaction",
    ],
)
def test_entries_and_transactions_cannot_be_updated_or_deleted(require_postgres, sql):
    txn = posted()

    with pytest.raises(IntegrityError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)

    assert sorted(LedgerEntry.objects.values_list("amount_minor", flat=True)) == [-500, 500]
    assert LedgerTransaction.objects.get().memo == txn.memo == ""


def test_the_orm_cannot_delete_an_entry_either(require_postgres):
    posted()
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            LedgerEntry.objects.first().delete()
    assert LedgerEntry.objects.count() == 2


def test_a_no_overdraft_balance_row_cannot_go_below_zero(require_postgres):
    with transaction.atomic():
        available = ledger_account(party_kind="merchant", party_id=3, kind="merchant_available", currency="CNY")

    with pytest.raises(IntegrityError):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE settlement_ledgeraccount SET balance_minor = -1 WHERE id = %s", [available.pk])

    available.refresh_from_db()
    assert available.balance_minor == 0
