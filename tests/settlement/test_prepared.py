"""The sale's two statements are prepared once per connection on PostgreSQL (core.prepared), whatever the
amounts, and Django's own queries are not prepared at all."""

from __future__ import annotations

from django.db import connection, transaction

from core.parties import agent_create
from settlement import facade
from settlement.models import LedgerTransaction
from tests.factories.core import MerchantFactory
from tests.factories.settlement import FeePlanFactory


def prepared_statements() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, parameter_types::text FROM pg_prepared_statements")
        return cursor.fetchall()


def test_sales_of_any_amount_share_one_prepared_plan_per_statement(require_postgres):
    merchant = MerchantFactory(agent=agent_create(name="City", parent_id=agent_create(name="Regional").pk))
    FeePlanFactory(merchant=merchant)
    # Amounts from a few fen to a hundred thousand yuan: psycopg would type them smallint, integer or bigint.
    for n, gross in enumerate([999, 12, 70_000, 5_000_000, 10_000_000]):
        with transaction.atomic():
            facade.sale_post(
                out_trade_no=f"P{n}",
                order_no=f"O{n}",
                merchant_id=merchant.pk,
                gross_minor=gross,
                currency="CNY",
                channel_account_id=77,
                channel_fee_minor=min(6, gross),
            )

    assert LedgerTransaction.objects.count() == 5
    statements = prepared_statements()
    ledger = [(sql, types) for sql, types in statements if "settlement_" in sql]
    texts = [sql for sql, _ in ledger]
    assert any(sql.startswith("SELECT m.agent_id") for sql in texts)  # the terms read
    assert any(sql.startswith("WITH t AS (INSERT INTO settlement_ledgertransaction") for sql in texts)  # the write
    assert len(texts) == len(set(texts)), "a ledger statement was prepared more than once"
    assert all("smallint" not in types and "integer" not in types for _, types in ledger)
    assert len(ledger) == len(statements), "only the ledger's statements are prepared"
