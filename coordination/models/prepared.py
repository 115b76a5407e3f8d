"""The statements the frame path runs for every frame, and the live pages for every state they
show, built by the ORM once and run many times.

Under load, building a query with the ORM costs several times what the database takes to run
it (issue 10's profile: about ten statements a frame, each mostly compiling). So the hot
statements are compiled once per database and thread, then bound to new values:

- `PreparedSelect`: a queryset written with placeholder values (`Slot`s); each run binds the
  real values and turns the rows into model instances the way the ORM's own iterator does
  (the backend's converters, `Model.from_db`, select_related's objects, annotations set), so
  callers get exactly what the queryset would have returned;
- `insert(obj)`: INSERT ... RETURNING the primary key, each value prepared by its field as
  `Model.save` would (`pre_save`, `get_db_prep_save`);
- `update(obj, fields)`: UPDATE of the named fields of one row, prepared the same way.

Only what the ORM would do for these model shapes: no signals are sent (ltpdash connects
none to these models) and no validation runs (the frame path validates before storing).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import connections
from django.db.models import (
    DateField,
    DateTimeField,
    Field,
    ForeignKey,
    JSONField,
    Model,
    QuerySet,
)

# What the ORM's own iterator sets select_related's objects with (not in django-stubs).
from django.db.models.query import get_related_populators  # type: ignore[attr-defined]

M = TypeVar("M", bound=Model)

_local = threading.local()


@dataclass(frozen=True)
class Slot:
    """A placeholder value in a prepared queryset: `value` is unique and of the field's type
    (so the ORM accepts it); each run replaces it with the value given under `name`."""

    name: str
    value: Any


@dataclass
class _Compiled:
    sql: str
    params: list[Any]
    slots: dict[int, tuple[str, type | None]]  # param position -> slot name, wrapper type
    model: type[Model]
    init_list: list[str]
    model_span: tuple[int, int]
    annotations: dict[str, int]
    converters: dict[int, tuple[list[Any], Any]]
    related: list[Any]  # RelatedPopulators: select_related's objects, set on each instance


class PreparedSelect(Generic[M]):
    """`build(**sentinels)` returns the queryset, sliced (`[:1]` for `first`, `[:n]` for
    `all`); `first(**values)` runs it for one instance, `all(**values)` for a list.

    Rows become instances as the ORM's own iterator makes them (`ModelIterable`): the
    backend's converters, `Model.from_db`, select_related's objects, annotations set."""

    def __init__(self, build: Callable[..., QuerySet[M]], *slots: Slot) -> None:
        self.build, self.slots = build, slots
        self.key = f"select:{id(self)}"

    def _compile(self, alias: str) -> _Compiled:
        queryset = self.build(**{slot.name: slot.value for slot in self.slots})
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        by_value = {(type(s.value), s.value): s for s in self.slots}
        slots: dict[int, tuple[str, type | None]] = {}
        for i, p in enumerate(params):
            # A backend may wrap a value in a subclass of its type (psycopg's Int4 for an
            # integer lookup on PostgreSQL): the bound value is wrapped the same way.
            for kind in type(p).__mro__[:-1]:
                slot = by_value.get((kind, p))
                if slot is not None:
                    slots[i] = (slot.name, None if type(p) is kind else type(p))
                    break
        select, klass_info = compiler.select, compiler.klass_info
        assert klass_info is not None
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        return _Compiled(
            sql=sql,
            params=list(params),
            slots=slots,
            model=queryset.model,
            init_list=[column[0].target.attname for column in select[start:end]],
            model_span=(start, end),
            annotations=dict(compiler.annotation_col_map),
            converters=compiler.get_converters([column[0] for column in select]),
            related=get_related_populators(klass_info, select, alias),
        )

    def first(self, using: str = "default", **values: Any) -> M | None:
        found = self._run(using, values, many=False)
        return found[0] if found else None

    def all(self, using: str = "default", **values: Any) -> list[M]:
        return self._run(using, values, many=True)

    def _run(self, using: str, values: dict[str, Any], many: bool) -> list[M]:
        compiled = _cached(self.key, using, lambda: self._compile(using))
        params = list(compiled.params)
        for position, (name, wrap) in compiled.slots.items():
            params[position] = values[name] if wrap is None else wrap(values[name])
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall() if many else cursor.fetchmany(1)
        return [self._instance(compiled, connection, using, row) for row in rows]

    @staticmethod
    def _instance(compiled: _Compiled, connection: Any, using: str, found: Sequence[Any]) -> M:
        row = list(found)
        for position, (converters, expression) in compiled.converters.items():
            value = row[position]
            for convert in converters:
                value = convert(value, expression, connection)
            row[position] = value
        start, end = compiled.model_span
        obj = compiled.model.from_db(using, compiled.init_list, row[start:end])
        for populator in compiled.related:
            populator.populate(row, obj)
        for name, position in compiled.annotations.items():
            setattr(obj, name, row[position])
        return obj  # type: ignore[return-value]


@dataclass
class _Write:
    sql: str
    fields: list[Field[Any, Any]]
    to_db: list[Callable[[Any], Any]]  # per field: its value as the driver takes it
    read: list[Callable[[Model], Any]]  # per field: its value on a new object (`pre_save`)


def insert(obj: Model, using: str = "default") -> None:
    """INSERT `obj` (a new row) and set its primary key, as `obj.save()` would."""
    model = type(obj)
    connection = connections[using]
    write = _cached(("insert", model), using, lambda: _compile_insert(model, connection))
    params = [to_db(read(obj)) for to_db, read in zip(write.to_db, write.read, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(write.sql, params)
        (pk,) = cursor.fetchone()
    obj.pk = pk
    obj._state.adding, obj._state.db = False, using


def attach(obj: Model, name: str, related: Model | None) -> None:
    """`obj.<name> = related` for a foreign key, without the descriptor's checks (the frame path
    sets its own rows' keys, several times a frame): the key, and the object cached for it."""
    field = type(obj)._meta.get_field(name)
    assert isinstance(field, ForeignKey)
    setattr(obj, field.attname, None if related is None else related.pk)
    field.set_cached_value(obj, related)


def insert_many(objs: Sequence[Model], using: str = "default") -> None:
    """INSERT new rows whose primary keys are already set (`keys`), in one executemany (one
    round trip on PostgreSQL: psycopg pipelines it)."""
    if not objs:
        return
    model = type(objs[0])
    connection = connections[using]
    write = _cached(
        ("insert-keyed", model), using, lambda: _compile_insert(model, connection, keyed=True)
    )
    rows = [
        [to_db(read(obj)) for to_db, read in zip(write.to_db, write.read, strict=True)]
        for obj in objs
    ]
    with connection.cursor() as cursor:
        cursor.executemany(write.sql, rows)
    for obj in objs:
        obj._state.adding, obj._state.db = False, using


def keys(model: type[Model], using: str = "default") -> Iterator[int]:
    """Primary keys for new rows of `model`, to be inserted with them (`insert_many`).

    PostgreSQL: the table's own sequence, 64 at a time (never handed out twice). SQLite: one
    past the largest key ever used (AUTOINCREMENT's rule), counted up in memory: valid only
    while this transaction holds the write lock (IMMEDIATE) and until something else inserts
    into the table in it."""
    connection = connections[using]
    meta = model._meta
    assert meta.pk is not None
    quote = connection.ops.quote_name
    table, key = quote(meta.db_table), quote(meta.pk.column)
    if connection.vendor == "postgresql":
        return _from_sequence(connection, meta.db_table, meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT MAX(n) FROM (SELECT seq AS n FROM sqlite_sequence WHERE name = %s "  # noqa: S608
            f"UNION ALL SELECT MAX({key}) FROM {table})",
            [meta.db_table],
        )
        (last,) = cursor.fetchone()
    return itertools.count((last or 0) + 1)


def _from_sequence(connection: Any, table: str, column: str) -> Iterator[int]:
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, 64)",
                [table, column],
            )
            block = [row[0] for row in cursor.fetchall()]
        yield from block


def _compile_insert(model: type[Model], connection: Any, keyed: bool = False) -> _Write:
    meta = model._meta
    fields = [f for f in meta.concrete_fields if keyed or not f.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    returning = "" if keyed else connection.ops.return_insert_columns([meta.pk])[0]
    marks = ", ".join(["%s"] * len(fields))
    # Names from the model's own metadata, quoted; every value is a bound parameter.
    table = quote(meta.db_table)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({marks}) {returning}"  # noqa: S608
    return _write(sql, fields, connection)


def update(obj: Model, fields: Sequence[str], using: str = "default") -> int:
    """UPDATE the named fields of `obj`'s row; returns the number of rows changed (0 or 1)."""
    meta = type(obj)._meta
    values = {}
    for name in fields:
        field = meta.get_field(name)
        assert isinstance(field, Field)
        values[field.attname] = getattr(obj, field.attname)
    return update_row(type(obj), obj.pk, values, using)


def update_row(model: type[Model], pk: Any, values: dict[str, Any], using: str = "default") -> int:
    """UPDATE one row of `model` by primary key, without building an instance; `values` by
    field name or attname. Returns the number of rows changed (0 or 1)."""
    connection = connections[using]
    names = tuple(values)
    write = _cached(
        ("update", model, names), using, lambda: _compile_update(model, names, connection)
    )
    params = [to_db(value) for to_db, value in zip(write.to_db, values.values(), strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(write.sql, [*params, pk])
        return int(cursor.rowcount)


def update_rows(
    model: type[Model], rows: Sequence[tuple[Any, dict[str, Any]]], using: str = "default"
) -> int:
    """UPDATE several rows of `model` (primary key, values by field name or attname; the same
    names in every row) in one executemany: one round trip on PostgreSQL. Returns the number
    of rows changed."""
    if not rows:
        return 0
    connection = connections[using]
    names = tuple(rows[0][1])
    write = _cached(
        ("update", model, names), using, lambda: _compile_update(model, names, connection)
    )
    params = []
    for pk, values in rows:
        assert tuple(values) == names, "every row names the same fields"
        params.append(
            [*(to_db(v) for to_db, v in zip(write.to_db, values.values(), strict=True)), pk]
        )
    with connection.cursor() as cursor:
        cursor.executemany(write.sql, params)
        return int(cursor.rowcount)


def _compile_update(model: type[Model], names: tuple[str, ...], connection: Any) -> _Write:
    meta = model._meta
    fields: list[Field[Any, Any]] = []
    for name in names:
        field = meta.get_field(name)
        assert isinstance(field, Field)
        fields.append(field)
    quote = connection.ops.quote_name
    sets = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    assert meta.pk is not None
    table, key = quote(meta.db_table), quote(meta.pk.column)
    sql = f"UPDATE {table} SET {sets} WHERE {key} = %s"  # noqa: S608
    return _write(sql, fields, connection)


# Fields whose value goes to every driver as it is when it already has the stored type: the
# field's own preparation would return it unchanged (and costs more than the statement).
_AS_IS = {
    "CharField": str,
    "TextField": str,
    "IntegerField": int,
    "BigIntegerField": int,
    "ForeignKey": int,
    "AutoField": int,
    "BigAutoField": int,
}


def _write(sql: str, fields: list[Field[Any, Any]], connection: Any) -> _Write:
    return _Write(
        sql,
        fields,
        [_to_db(f, connection) for f in fields],
        [_reader(f) for f in fields],
    )


def _to_db(field: Field[Any, Any], connection: Any) -> Callable[[Any], Any]:
    """What `field.get_db_prep_save` does, with the common cases short: a value of the stored
    type as it is, an aware datetime straight to the backend's adapter."""
    prepare, null = field.get_db_prep_save, field.null
    plain = _AS_IS.get(field.get_internal_type())

    def general(value: Any) -> Any:
        if value is None and null:
            return None
        if isinstance(value, Model):  # a related object: its key, as the ORM's UPDATE takes it
            value = value.pk
        return prepare(value, connection)

    if plain is not None:
        return lambda value: value if type(value) is plain else general(value)
    if isinstance(field, DateTimeField) and settings.USE_TZ:
        adapt = connection.ops.adapt_datetimefield_value
        # An aware datetime needs no conversion before the adapter (a naive one: the field
        # warns and converts, as the ORM does).
        return lambda value: (
            adapt(value) if type(value) is datetime and value.tzinfo is not None else general(value)
        )
    if isinstance(field, JSONField):
        # An empty list, the frame's usual `warnings`: adapted once (a JSON dump each time
        # cost more than the rest of the frame's row).
        empty = general([])
        return lambda value: empty if type(value) is list and not value else general(value)
    return general


def _reader(field: Field[Any, Any]) -> Callable[[Model], Any]:
    """`field.pre_save(obj, add=True)`, read as a plain attribute where that is all it does."""
    stamps = isinstance(field, DateTimeField | DateField) and (field.auto_now or field.auto_now_add)
    if type(field).pre_save in _PLAIN_PRE_SAVE and not stamps:
        return attrgetter(field.attname)
    return lambda obj: field.pre_save(obj, True)


_PLAIN_PRE_SAVE = {Field.pre_save, DateTimeField.pre_save, DateField.pre_save}


T = TypeVar("T")


def table(model: type[Model], using: str = "default") -> str:
    """`model`'s table, quoted for a plain statement (names from the model, never from input)."""
    return str(connections[using].ops.quote_name(model._meta.db_table))


def marks(count: int) -> str:
    """`count` placeholders for an IN list ("%s, %s, …"; "NULL" for none, which matches no row)."""
    return ", ".join(["%s"] * count) or "NULL"


def _cached(key: Hashable, using: str, build: Callable[[], T]) -> T:
    """Per thread (a compiled statement holds nothing of a connection, but the converters a
    backend hands out may) and per database alias."""
    cache: dict[tuple[Hashable, str], Any] | None = getattr(_local, "compiled", None)
    if cache is None:
        cache = _local.compiled = {}
    found = cache.get((key, using))
    if found is None:
        found = cache[(key, using)] = build()
    return found
