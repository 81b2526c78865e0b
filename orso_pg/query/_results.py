"""What a query's rows mean: converting result values back to the Python types of the model.

Owns the per-column loaders of a :class:`~orso_pg.QueryBuilder`'s output and the Python type
of an aggregate's result. Pure: it is handed rows, it never runs a query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from orso_pg._schema import Column
from orso_pg.errors import ValidationError
from orso_pg.query._filters import Aggregate, isa

if TYPE_CHECKING:
    from orso_pg.query._builder import QueryBuilder

__all__ = ["aggregate_value", "builder_loaders", "check_batch_size", "convert_row"]

Loader = Callable[[Any], Any]


def check_batch_size(batch_size: object, label: str) -> None:
    """Refuse a stream's *batch_size* unless it is a positive int."""
    if isa(batch_size, bool) or not isa(batch_size, int) or batch_size < 1:  # type: ignore[operator]
        msg = f"batch_size must be a positive int, not {batch_size!r}"
        raise ValidationError(msg, table=label, value=batch_size)


def aggregate_value(function: Aggregate, column: Column | None, value: Any) -> Any:
    """Return an aggregate's result as the Python type of its column.

    ``sum`` of a BIGINT column comes back from PostgreSQL as NUMERIC and is returned as an int;
    ``avg`` of an integer or float column is a float; ``min``/``max`` load like the column.
    """
    if value is None:
        return None
    if function is Aggregate.COUNT:
        return int(value)
    python = column.type.python if column is not None else None
    if function in (Aggregate.SUM, Aggregate.AVG):
        if python is int and function is Aggregate.SUM:
            return int(value)
        if python in (int, float):
            return float(value)
        return value
    if column is not None and column.type.load is not None:
        return column.type.load(value)
    return value


def _aggregate_loader(function: Aggregate, column: Column | None) -> Loader:
    return lambda value: aggregate_value(function, column, value)


def _nullable(load: Loader) -> Loader:
    return lambda value: None if value is None else load(value)


def builder_loaders(builder: QueryBuilder) -> list[Loader | None]:
    """Return one loader per output column of *builder* (None where values pass through)."""
    loaders: list[Loader | None] = []
    for _, col, function in builder.output_columns():
        if function is not None:
            loaders.append(_aggregate_loader(function, col))
        elif col is not None and col.type.load is not None:
            loaders.append(_nullable(col.type.load))
        else:
            loaders.append(None)
    return loaders


def convert_row(loaders: list[Loader | None], row: Sequence[Any]) -> tuple[Any, ...]:
    """Apply *loaders* to one result row."""
    return tuple(v if ld is None else ld(v) for ld, v in zip(loaders, row, strict=True))
