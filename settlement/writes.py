"""A posting's rows written in as few statements as the database allows. Used by `ledger.ledger_post` only.

A posting is its transaction row, its entries and, for a sale, a companion row pointing at it (the release
row). On PostgreSQL the three go in one statement: data-modifying CTEs, where the transaction's
`INSERT ... ON CONFLICT (idempotency_key) DO NOTHING RETURNING id` feeds the other inserts, so when the key is
taken nothing at all is written. SQLite has no data-modifying CTEs: the same inserts run one after the other,
the later ones only when the first returned an id. The PostgreSQL statement is prepared (core.prepared).
Either way there is no savepoint and no lookup first; a
concurrent insert of the same key waits on the unique index until the other transaction ends.

Why by hand: this runs inside every paid callback's transaction, and the ORM's two extra statements and their
compilation were a millisecond of the notify path on this machine (bench/notify_ledger.py).
"""

# ruff: noqa: S608 -- only table names from the models and constant column names are formatted into the SQL;
# every value is a query parameter.

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.db import models, transaction

from core.prepared import prepared_cursor
from settlement.models import LedgerEntry, LedgerTransaction


@dataclass(frozen=True)
class Companion:
    """A row written with the posting and pointing at it: `model`'s field `link` gets the transaction's id."""

    model: type[models.Model]
    link: str
    values: Mapping[str, object]


def _companion_params(companion: Companion, connection) -> tuple[str, tuple[str, ...], list]:
    """The companion's table, its columns (the link first) and its values as the database takes them."""
    meta = companion.model._meta
    fields = [meta.get_field(name) for name in companion.values]
    columns = (meta.get_field(companion.link).column, *(field.column for field in fields))
    params = [
        field.get_db_prep_save(value, connection)
        for field, value in zip(fields, companion.values.values(), strict=True)
    ]
    return meta.db_table, columns, params


_TXN_INSERT = (
    f"INSERT INTO {LedgerTransaction._meta.db_table} (idempotency_key, kind, reference, memo, lines_digest, created_at) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
)
_ENTRY_COLUMNS = f"{LedgerEntry._meta.db_table} (transaction_id, account_id, amount_minor, currency)"


@cache
def _postgresql_statement(lines: int, companion_table: str, companion_columns: tuple[str, ...]) -> str:
    """One statement: the transaction's insert feeds the entries' and the companion's (cached per shape)."""
    values = ", ".join(["(%s, %s, %s)"] * lines)
    sql = (
        f"WITH t AS ({_TXN_INSERT}), "
        f"e AS (INSERT INTO {_ENTRY_COLUMNS} SELECT t.id, v.a, v.m, v.c FROM t, (VALUES {values}) AS v (a, m, c))"
    )
    if companion_table:
        placeholders = ", ".join(["%s"] * (len(companion_columns) - 1))
        sql += (
            f", r AS (INSERT INTO {companion_table} ({', '.join(companion_columns)}) "
            f"SELECT t.id, {placeholders} FROM t)"
        )
    return sql + " SELECT id FROM t"


def posting_insert(
    *,
    key: str,
    kind: str,
    reference: str,
    memo: str,
    digest: str,
    created_at: datetime,
    lines: Sequence[tuple[int, int, str]],
    companion: Companion | None = None,
) -> int | None:
    """Write the transaction, its `lines` (account id, amount, currency) and the companion; the new id, or None
    (and nothing written) when the key is taken."""
    connection = transaction.get_connection()
    txn_params = [key, kind, reference, memo, digest, connection.ops.adapt_datetimefield_value(created_at)]
    table, columns, companion_params = (
        _companion_params(companion, connection) if companion is not None else ("", (), [])
    )
    if connection.vendor == "postgresql":
        with prepared_cursor() as cursor:
            cursor.execute(
                _postgresql_statement(len(lines), table, columns),
                [*txn_params, *(value for line in lines for value in line), *companion_params],
            )
            row = cursor.fetchone()
        return row[0] if row else None
    with connection.cursor() as cursor:
        cursor.execute(_TXN_INSERT, txn_params)
        row = cursor.fetchone()
        if row is None:
            return None
        values = ", ".join(["(%s, %s, %s, %s)"] * len(lines))
        cursor.execute(f"INSERT INTO {_ENTRY_COLUMNS} VALUES {values}", [v for line in lines for v in (row[0], *line)])
        if companion is not None:
            placeholders = ", ".join(["%s"] * len(companion_params))
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES (%s, {placeholders})", [row[0], *companion_params]
            )
        return row[0]
