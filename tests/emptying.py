"""Emptying the test database after a test that committed to it (`transactional_db`, `live`,
the end-to-end tests): the same empty database as Django's flush leaves, sooner.

Django's TransactionTestCase flushes every table after each such test (on PostgreSQL one
TRUNCATE of all 31 tables) and then emits post_migrate, which writes back the content types and
permissions the flush took: about 0.3 s a test on PostgreSQL, for some 300 tests a run. A test
writes to a handful of tables; one query finds which have rows, and deleting those rows takes a
few milliseconds (the foreign keys are deferred, so the order does not matter).

The content types and permissions are kept as migrate made them, so long as a test left them
so: when one did not, Django's own flush runs instead, as it always did. Sequences are not
reset either way (Django's flush does not reset them).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections, transaction
from django.test import TransactionTestCase

# migrate's post_migrate fills these; the tests read them and do not change them.
KEPT = ("django_content_type", "auth_permission")

_django_fixture_teardown = TransactionTestCase._fixture_teardown
_as_migrated: dict[str, list[list[tuple]]] = {}  # per database: the KEPT tables' rows


def _kept_rows(alias: str) -> list[list[tuple]]:
    connection = connections[alias]
    with connection.cursor() as cursor:
        rows = []
        for table in KEPT:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)} ORDER BY id")
            rows.append(cursor.fetchall())
        return rows


def _tables_with_rows(alias: str) -> list[str]:
    connection = connections[alias]
    tables = sorted(connection.introspection.django_table_names(only_existing=True))
    quote = connection.ops.quote_name
    query = " UNION ALL ".join(
        f"SELECT {n} WHERE EXISTS (SELECT 1 FROM {quote(table)})" for n, table in enumerate(tables)
    )
    with connection.cursor() as cursor:
        cursor.execute(query)
        return [tables[n] for (n,) in cursor.fetchall()]


def _empty(alias: str) -> bool:
    """Delete every row of the database's tables but the KEPT ones; False, having done
    nothing, when those are not as migrate made them."""
    if _kept_rows(alias) != _as_migrated[alias]:
        return False
    connection = connections[alias]
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        for table in _tables_with_rows(alias):
            if table not in KEPT:
                cursor.execute(f"DELETE FROM {connection.ops.quote_name(table)}")
    return True


def _fixture_teardown(self: Any) -> None:
    """TransactionTestCase._fixture_teardown, by deleting rows where that is enough."""
    if self.available_apps is not None or self.serialized_rollback:
        _django_fixture_teardown(self)
        return
    aliases = list(self._databases_names(include_mirrors=False))
    if not all([_empty(alias) for alias in aliases]):
        _django_fixture_teardown(self)  # a full flush; post_migrate writes the KEPT anew
        for alias in aliases:
            _as_migrated[alias] = _kept_rows(alias)


def empty_by_deleting(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, tests that committed are cleaned up after by `_empty` (the database
    must be set up: its KEPT tables as migrate made them are read now)."""
    for alias in connections:
        _as_migrated[alias] = _kept_rows(alias)
    monkeypatch.setattr(TransactionTestCase, "_fixture_teardown", _fixture_teardown)
