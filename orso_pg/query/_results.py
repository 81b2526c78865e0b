"""What a query's rows mean: converting result values back to the Python types of the model.

Owns the per-column loaders of a :class:`~orso_pg.QueryBuilder`'s output and the Python type
of an aggregate's result. Pure: it is handed rows, it never runs a query.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from orso_pg._schema import Column
from orso_pg._types import Unloadable
from orso_pg.errors import DataError, ValidationError, describe_value
from orso_pg.query._filters import Aggregate, isa

if TYPE_CHECKING:
    from orso_pg.query._builder import QueryBuilder

__all__ = [
    "aggregate_value",
    "builder_loaders",
    "check_batch_size",
    "convert_row",
    "loaded",
    "unloadable_value",
]

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


def unloadable_value(table: str, column: Column, value: object, exc: Unloadable) -> DataError:
    """Return the :class:`DataError` for a selected *value* its column cannot load."""
    msg = (
        f"{table}.{column.name} holds {describe_value(value)}, which the model cannot load: "
        f"{exc} (written by another program, or the model lost a member?)"
    )
    return DataError(msg, table=table, column=column.name, value=value)


def _checked(table: str, column: Column, load: Loader) -> Loader:
    def checked(value: Any) -> Any:
        try:
            return load(value)
        except Unloadable as exc:
            raise unloadable_value(table, column, value, exc) from None

    return checked


def _aggregate_loader(table: str, function: Aggregate, column: Column | None) -> Loader:
    load: Loader = lambda value: aggregate_value(function, column, value)  # noqa: E731
    return load if column is None else _checked(table, column, load)


def _nullable(load: Loader) -> Loader:
    return lambda value: None if value is None else load(value)


def builder_loaders(builder: QueryBuilder) -> list[Loader | None]:
    """Return one loader per output column of *builder* (None where values pass through)."""
    loaders: list[Loader | None] = []
    for _, col, function in builder.output_columns():
        if function is not None:
            loaders.append(_aggregate_loader(builder.base_name, function, col))
        elif col is not None and col.type.load is not None:
            loaders.append(_nullable(_checked(builder.base_name, col, col.type.load)))
        else:
            loaders.append(None)
    return loaders


def convert_row(loaders: list[Loader | None], row: Sequence[Any]) -> tuple[Any, ...]:
    """Apply *loaders* to one result row."""
    return tuple(v if ld is None else ld(v) for ld, v in zip(loaders, row, strict=True))


def loaded(rows: Iterator[Any], load: Callable[[Any], Any]) -> Iterator[Any]:
    """Return an iterator of ``load(row)`` over *rows* that closes *rows* when it stops.

    A load that fails (a value the model cannot load) ends the iteration: *rows*, a
    server-side cursor holding a pooled connection in a transaction, is closed right away
    rather than whenever the garbage collector gets to it.
    """

    def run() -> Generator[Any]:
        try:
            for row in rows:
                yield load(row)
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()

    return run()
