"""``Model.nearest``: the k rows whose vector column is closest to a query vector.

Owns the steps of a nearest-neighbour read: one ``SELECT <columns>, <distance> ... WHERE
<filter> ORDER BY <distance> LIMIT k`` built by :class:`~orso_pg.QueryBuilder`'s vector
methods, run through a session, loaded as ``(instance, distance)`` pairs. Without a filter the
statement's text depends only on the table, the column and the distance, so it is built once
and kept (a search is a per-call operation). It must not build SQL text itself nor touch a
connection.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

from psycopg import sql

from orso_pg._compiler import Statement
from orso_pg._executor import loader
from orso_pg._memo import Memo
from orso_pg._operations import setup
from orso_pg._schema import Column
from orso_pg.errors import QueryError
from orso_pg.query import _vector as vq
from orso_pg.query._builder import QueryBuilder
from orso_pg.query._filters import Filter, isa

__all__ = ["nearest"]

M = TypeVar("M")

_SHAPES: Final[Memo[tuple[sql.Composable, Column]]] = Memo()


def nearest(
    cls: type[M],
    column: str,
    vector: Any,
    k: int,
    db: object,
    *,
    distance: str | None = None,
    filter: Filter | None = None,
    ef_search: int | None = None,
    probes: int | None = None,
    table_name: object = None,
) -> list[tuple[M, float]]:
    """Return the *k* rows of *cls* nearest to *vector* in *column*, closest first."""
    meta, table, label, session = setup(cls, db, table_name)
    key = (table, column, distance)
    shape = _SHAPES.get(key, (meta,)) if filter is None else None
    if shape is not None and isa(k, int) and not isa(k, bool) and k >= 0:
        query, col = shape
        term = vq.VectorTerm(vq.Role.ORDER, column, vector).checked(col, label)
        settings = vq.setting_statements(vq.search_settings(ef_search, probes, label))
        stmt = Statement(query, (term.bound, k), settings)
    else:
        builder = QueryBuilder(meta, table)
        if filter is not None:
            if not isa(filter, Filter):
                msg = f"filter must be a Filter, not {type(filter).__name__}"
                raise QueryError(msg, table=label, value=filter)
            builder = builder.where(filter)
        builder = builder.vector_distance(column, vector, "distance", distance=distance)
        builder = builder.vector_search(
            column, vector, k, distance=distance, ef_search=ef_search, probes=probes
        )
        stmt = builder.build()
        if filter is None:
            _SHAPES.put(key, (stmt.query, meta.column(column)), (meta,))
    rows = session._read(lambda ex: ex.fetch_all(stmt, table=label))
    load = loader(meta)
    return [(load(row), float(row[-1])) for row in rows]
