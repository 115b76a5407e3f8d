"""The statements the frame path runs for every frame, built by the ORM once and run many times.

Under load, building a query with the ORM costs several times what the database takes to run
it (issue 10's profile: about ten statements a frame, each mostly compiling). So the hot
statements are compiled once per database and thread, then bound to new values:

- `PreparedSelect`: a queryset written with placeholder values (`Slot`s); each run binds the
  real values and turns the row into a model instance the way the ORM's own iterator does
  (the backend's converters, `Model.from_db`, annotations set), so callers get exactly what
  the queryset would have returned;
- `insert(obj)`: INSERT ... RETURNING the primary key, each value prepared by its field as
  `Model.save` would (`pre_save`, `get_db_prep_save`);
- `update(obj, fields)`: UPDATE of the named fields of one row, prepared the same way.

Only what the ORM would do for these model shapes: no signals are sent (ltpdash connects
none to these models) and no validation runs (the frame path validates before storing).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import connections
from django.db.models import Field, Model, QuerySet

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
    slots: dict[int, str]  # param position -> slot name
    init_list: list[str]
    model_span: tuple[int, int]
    annotations: dict[str, int]
    converters: dict[int, tuple[list[Any], Any]]


class PreparedSelect(Generic[M]):
    """`build(**sentinels)` returns the queryset (sliced to one row, `[:1]`); `first(**values)`
    runs it."""

    def __init__(self, build: Callable[..., QuerySet[M]], *slots: Slot) -> None:
        self.build, self.slots = build, slots
        self.key = f"select:{id(self)}"

    def _compile(self, alias: str) -> _Compiled:
        queryset = self.build(**{slot.name: slot.value for slot in self.slots})
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        by_value = {(type(s.value), s.value): s.name for s in self.slots}
        slots = {
            i: by_value[(type(p), p)] for i, p in enumerate(params) if (type(p), p) in by_value
        }
        select, klass_info = compiler.select, compiler.klass_info
        assert klass_info is not None
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        return _Compiled(
            sql=sql,
            params=list(params),
            slots=slots,
            init_list=[column[0].target.attname for column in select[start:end]],
            model_span=(start, end),
            annotations=dict(compiler.annotation_col_map),
            converters=compiler.get_converters([column[0] for column in select]),
        )

    def first(self, using: str = "default", **values: Any) -> M | None:
        compiled = _cached(self.key, using, lambda: self._compile(using))
        params = list(compiled.params)
        for position, name in compiled.slots.items():
            params[position] = values[name]
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        row = list(row)
        for position, (converters, expression) in compiled.converters.items():
            value = row[position]
            for convert in converters:
                value = convert(value, expression, connection)
            row[position] = value
        start, end = compiled.model_span
        obj = self._model(using).from_db(using, compiled.init_list, row[start:end])
        for name, position in compiled.annotations.items():
            setattr(obj, name, row[position])
        return obj

    def _model(self, using: str) -> type[M]:
        return _cached(
            f"{self.key}:model",
            using,
            lambda: self.build(**{slot.name: slot.value for slot in self.slots}).model,
        )


def insert(obj: Model, using: str = "default") -> None:
    """INSERT `obj` (a new row) and set its primary key, as `obj.save()` would."""
    meta = type(obj)._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    connection = connections[using]

    def compile_insert() -> str:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(f.column) for f in fields)
        returning, _ = connection.ops.return_insert_columns([meta.pk])
        marks = ", ".join(["%s"] * len(fields))
        # Names from the model's own metadata, quoted; every value is a bound parameter.
        table = quote(meta.db_table)
        return f"INSERT INTO {table} ({columns}) VALUES ({marks}) {returning}"  # noqa: S608

    sql = _cached(f"insert:{meta.label}", using, compile_insert)
    params = [_for_db(f, f.pre_save(obj, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (pk,) = cursor.fetchone()
    obj.pk = pk
    obj._state.adding, obj._state.db = False, using


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
    meta = model._meta
    targets: list[Field[Any, Any]] = []
    for name in values:
        field = meta.get_field(name)
        assert isinstance(field, Field)
        targets.append(field)
    connection = connections[using]

    def compile_update() -> str:
        quote = connection.ops.quote_name
        sets = ", ".join(f"{quote(f.column)} = %s" for f in targets)
        assert meta.pk is not None
        table, key = quote(meta.db_table), quote(meta.pk.column)
        return f"UPDATE {table} SET {sets} WHERE {key} = %s"  # noqa: S608

    sql = _cached(f"update:{meta.label}:{','.join(values)}", using, compile_update)
    params = [
        _for_db(f, value, connection) for f, value in zip(targets, values.values(), strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, pk])
        return int(cursor.rowcount)


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


def _for_db(field: Field[Any, Any], value: Any, connection: Any) -> Any:
    if isinstance(value, Model):  # a related object: its key, as the ORM's UPDATE takes it
        value = value.pk
    plain = _AS_IS.get(field.get_internal_type())
    if plain is not None and (type(value) is plain or (value is None and field.null)):
        return value
    return field.get_db_prep_save(value, connection)


T = TypeVar("T")


def _cached(key: str, using: str, build: Callable[[], T]) -> T:
    """Per thread (a compiled statement holds nothing of a connection, but the converters a
    backend hands out may) and per database alias."""
    cache: dict[tuple[str, str], Any] | None = getattr(_local, "compiled", None)
    if cache is None:
        cache = _local.compiled = {}
    found = cache.get((key, using))
    if found is None:
        found = cache[(key, using)] = build()
    return found
