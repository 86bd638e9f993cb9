"""core.prepared: one server-binding cursor kept per database connection, its statements prepared once; another
connection gets a cursor of its own; Django's query capture still sees every statement."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.prepared import prepared_cursor

pytestmark = pytest.mark.django_db


def run(value: int):
    with prepared_cursor() as cursor:
        cursor.execute("SELECT %s + 1", [value])
        answer = cursor.fetchone()[0]
        return answer, cursor.cursor


def test_one_cursor_per_connection_answers_each_statement(require_postgres):
    with CaptureQueriesContext(connection) as captured:
        (two, first), (four, second) = run(1), run(3)
    assert (two, four) == (2, 4)
    assert first is second and not first.closed  # kept for the connection's next statement
    assert len(captured) == 2
    prepared = connection.cursor()
    prepared.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1 + 1'")
    assert prepared.fetchone()[0] == 1


@pytest.mark.django_db(transaction=True)
def test_another_connection_gets_a_cursor_of_its_own(require_postgres):
    _, before = run(1)
    old = connection.connection
    connection.close()
    answer, after = run(5)
    assert answer == 6
    assert after.connection is connection.connection  # never another connection's cursor
    # A pool may hand the same connection back (then its cursor is the kept one), or another (then a new one).
    assert (after is before) == (connection.connection is old)
