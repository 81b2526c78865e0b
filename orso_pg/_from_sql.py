"""Raw SQL into models: ``Model.from_sql(sql.SQL(...), params, db)``.

Owns loading the rows of a hand-written query into model instances: the query's result
columns are matched with the model's by name (in any order), and a missing, extra or repeated
column, or one whose PostgreSQL type would load as another Python type (a ``timestamp``
where the model has a ``timestamptz``, text where it has a number), is a :class:`QueryError`
naming it, before any instance is built. It must not build SQL itself: the query is the
caller's, checked by :mod:`orso_pg.query._raw` and run by the executor through the session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypeVar

from psycopg.postgres import types as pg_types

from orso_pg._executor import loader
from orso_pg._operations import check_session
from orso_pg._schema import Column, TableMeta, table_of
from orso_pg.errors import QueryError
from orso_pg.query._raw import raw_statement

__all__ = ["from_sql"]

M = TypeVar("M")

# PostgreSQL types that load as the same Python type: a result column of one of them may fill
# a model column declared with another of the same family.
_FAMILIES: Final = {
    "int2": "integer",
    "int4": "integer",
    "int8": "integer",
    "oid": "integer",
    "float4": "float",
    "float8": "float",
    "text": "text",
    "varchar": "text",
    "bpchar": "text",
    "name": "text",
    "json": "json",
    "jsonb": "json",
}


def _type_name(oid: int) -> str | None:
    info = pg_types.get(oid)
    if info is None:
        return None
    return f"{info.name}[]" if oid == info.array_oid else info.name


def _family(name: str) -> str:
    array = name.endswith("[]")
    base = name.removesuffix("[]")
    return _FAMILIES.get(base, base) + ("[]" if array else "")


def _check_type(meta: TableMeta, col: Column, oid: int) -> None:
    if col.options.sql_type is not None:
        return  # a declared type may be any the server knows; its loader copes or refuses
    got = _type_name(oid)
    want = col.type.copy_name
    if got is None or pg_types.get(want.removesuffix("[]")) is None:
        return  # a type psycopg does not know by oid (an extension's, an enum): nothing to compare
    if _family(got) != _family(want):
        msg = (
            f"from_sql: column {col.name!r} comes back as {got}, but {meta.name}.{col.name} "
            f"is {col.type.label}; cast it in the query ({col.name}::{col.type.label})"
        )
        raise QueryError(msg, table=meta.name, column=col.name, value=got)


def _order(meta: TableMeta, columns: list[tuple[str, int]]) -> list[int] | None:
    """Return the result position of each model column (None when already in model order)."""
    names = [name for name, _ in columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    missing = [c.name for c in meta.columns if c.name not in names]
    extra = [n for n in dict.fromkeys(names) if n not in meta.by_name]
    if repeated or missing or extra:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if extra:
            problems.append(f"extra {', '.join(extra)}")
        if repeated:
            problems.append(f"repeated {', '.join(repeated)}")
        msg = (
            f"from_sql: the query's columns do not match {meta.cls.__name__} "
            f"({'; '.join(problems)}); it must return exactly: {', '.join(meta.column_names)}"
        )
        raise QueryError(msg, table=meta.name, value=names)
    positions = [names.index(c.name) for c in meta.columns]
    for col, i in zip(meta.columns, positions, strict=True):
        _check_type(meta, col, columns[i][1])
    return None if positions == list(range(len(positions))) else positions


def from_sql(cls: type[M], query: object, params: Sequence[Any], db: object) -> list[M]:
    """Run a hand-written query and load its rows as instances of *cls*.

    The query must return every column of the model, by name, in any order, and nothing else.
    It runs through the executor (listeners, error translation) and is never retried, since it
    may write (``UPDATE ... RETURNING *`` is a fine source of instances).
    """
    meta = table_of(cls)
    session = check_session(db)
    stmt = raw_statement(query, params, "from_sql")
    columns, rows = session._write(lambda ex: ex.fetch_described(stmt, table=meta.name))
    if not columns:
        msg = "from_sql: the statement returns no rows; add RETURNING or use a SELECT"
        raise QueryError(msg, table=meta.name)
    positions = _order(meta, columns)
    load = loader(meta)
    if positions is None:
        return [load(row) for row in rows]
    return [load([row[i] for i in positions]) for row in rows]
