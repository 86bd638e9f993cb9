"""A cursor for the few statements on the hot paths, prepared once per connection on PostgreSQL.

Planning was most of their cost: the sale's terms read (settlement.terms) took 0.6 ms through Django's cursor and
0.2 ms prepared, on this machine. Django binds parameters on the client (psycopg's ClientCursor), which never
prepares; this cursor binds on the server (psycopg's Cursor), so psycopg prepares the statement on the
connection the first time it runs (DATABASES OPTIONS `prepare_threshold`, cardshop.settings) and reuses the plan.
Only the statements sent through here are prepared (the ledger's two of every paid callback, risk's read and write
of every checkout); every other query of the shop is unchanged. It is still Django's cursor wrapper, so query
logging, CaptureQueriesContext and execute wrappers see these statements.
Behind a connection pooler that cannot keep prepared statements (PgBouncer in transaction mode before 1.21), set
DATABASE_PREPARED=0: the same cursor then runs them unprepared. SQLite gets Django's cursor."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from weakref import WeakKeyDictionary

from django.db import transaction

# One server-binding cursor kept per psycopg connection: making one (and its int dumper) cost ~0.1 ms each time,
# on a hot path that uses it twice per checkout. A connection serves one thread at a time (Django's), so does this.
_kept: WeakKeyDictionary = WeakKeyDictionary()


@contextmanager
def prepared_cursor() -> Iterator:
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.ensure_connection()
    raw = _kept.get(connection.connection)
    if raw is None or raw.closed:
        raw = _kept[connection.connection] = _server_binding_cursor(connection.connection)
    # `_prepare_cursor` is what connection.cursor() does with the cursor it creates: thread check, debug wrapper.
    # The wrapper is not closed on the way out: that would close the kept cursor.
    yield connection._prepare_cursor(raw)


def _server_binding_cursor(psycopg_connection):
    from django.db.backends.postgresql.base import ServerBindingCursor
    from psycopg.types.numeric import Int8Dumper

    raw = ServerBindingCursor(psycopg_connection)
    # psycopg types an int parameter by its size (smallint, integer, bigint): a statement would be prepared once
    # per combination of amount sizes. Every int is a bigint here, so each statement is prepared once.
    raw.adapters.register_dumper(int, Int8Dumper)
    return raw
