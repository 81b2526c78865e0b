"""Vector terms of a query: distances to a query vector, as an order, a bound or a column.

Owns what ``QueryBuilder.vector_search`` / ``vector_similar`` / ``vector_distance`` (and
``Model.nearest``) record, and their compilation: ``"col" <op> %s`` with the operator of the
chosen distance (by default the one the column's index was declared with, so the index serves
the query), the query vector checked by the column's own type and bound, and the per-query
``hnsw.ef_search`` / ``ivfflat.probes`` settings as ``set_config(..., true)`` statements. Pure:
it never runs anything.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any, Final

import attrs
from psycopg import sql

from orso_pg import _vector
from orso_pg._compiler import Statement
from orso_pg._schema import Column
from orso_pg._types import Refused
from orso_pg.errors import QueryError, ValidationError, describe_value

__all__ = ["Role", "VectorTerm", "search_settings"]

_SET: Final = sql.SQL("SELECT set_config(%s, %s, true)")


class Role(enum.Enum):
    """Where a vector term goes in the query."""

    ORDER = "order"  # ORDER BY distance (vector_search)
    WITHIN = "within"  # WHERE distance < threshold (vector_similar)
    SELECT = "select"  # distance AS alias (vector_distance)


@attrs.frozen
class VectorTerm:
    """One distance between a vector column and a query vector.

    Attributes:
        role: Where it goes.
        column: The column name (``"col"`` or ``"table.col"``).
        value: The query vector as given; checked when the query is compiled.
        distance: ``l2``, ``cosine``, ``inner_product`` or ``l1``; None for the column's own.
        threshold: With ``WITHIN``: the exclusive upper bound.
        alias: With ``SELECT``: the output column's name.
        bound: The query vector as the column's type binds it (set by :meth:`checked`).
    """

    role: Role
    column: str
    value: Any
    distance: str | None = None
    threshold: float | None = None
    alias: str | None = None
    bound: Any = None

    def checked(self, col: Column, table: str) -> VectorTerm:
        """Return the term with its query vector checked and dumped by *col*'s type.

        Raises:
            QueryError: *col* is not a vector column.
            ValidationError: the column refuses the query vector.
        """
        if _vector.kind_of(col.type) is None:
            msg = f"{table}.{col.name} is not a vector column (declare it with vector=N)"
            raise QueryError(msg, table=table, column=col.name)
        try:
            bound = col.type.dump(self.value)
        except Refused as exc:
            shown = describe_value(self.value)
            msg = f"{table}.{col.name}: query vector {shown}: {exc}"
            raise ValidationError(msg, table=table, column=col.name, value=self.value) from None
        return attrs.evolve(self, bound=bound)

    def compile(
        self,
        resolve: Callable[[str], tuple[sql.Composable, Column]],
        table: str,
        params: list[Any],
    ) -> sql.Composable:
        """Return ``(expr <op> %s)``, appending the bound query vector to *params*.

        The term must come from :meth:`checked` (the builder's vector methods make it so).
        """
        del table  # the column was checked with the term
        expr, col = resolve(self.column)
        distance = self.distance or col.options.distance or "l2"
        params.append(self.bound)
        term_sql = sql.SQL("({} {} %s)").format(expr, _vector.operator(distance))
        if self.role is Role.WITHIN:
            params.append(self.threshold)
            return sql.SQL("{} < %s").format(term_sql)
        return term_sql


def check_distance(distance: object, table: str) -> str | None:
    """Return *distance* if it names one of pgvector's distances (or is None)."""
    if distance is None or (isinstance(distance, str) and distance in _vector.DISTANCES):
        return distance
    msg = f"distance must be one of {tuple(_vector.DISTANCES)}, not {distance!r}"
    raise QueryError(msg, table=table, value=distance)


def check_threshold(threshold: object, table: str) -> float:
    """Return *threshold* as a finite float."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        msg = f"threshold must be a number, not {threshold!r}"
        raise QueryError(msg, table=table, value=threshold)
    if not math.isfinite(threshold):
        msg = f"threshold must be finite, not {threshold!r}"
        raise QueryError(msg, table=table, value=threshold)
    return float(threshold)


def search_settings(ef_search: object, probes: object, table: str) -> tuple[tuple[str, int], ...]:
    """Return the index settings a search asks for, checked (positive ints)."""
    found = []
    for name, value, limit in (
        ("hnsw.ef_search", ef_search, 1000),
        ("ivfflat.probes", probes, 32768),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            key = name.partition(".")[2]
            msg = f"{key} must be an int between 1 and {limit}, not {value!r}"
            raise QueryError(msg, table=table, value=value)
        found.append((name, value))
    return tuple(found)


def setting_statements(settings: tuple[tuple[str, int], ...]) -> tuple[Statement, ...]:
    """Return the ``set_config(name, value, true)`` statements of *settings*."""
    return tuple(Statement(_SET, (name, str(value))) for name, value in settings)
