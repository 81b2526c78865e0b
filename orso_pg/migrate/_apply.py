"""Running planned migration steps.

Owns what happens when a step of ``_planner`` runs: plain statements, type changes
that first prove no value changes (and otherwise name one that would), compressed-array
conversions that stream the rows through :mod:`orso_pg.codec` in batches, and concurrent index
builds that clean up the invalid index a failure leaves. It runs through an
:class:`~orso_pg._executor.Executor` inside the caller's transaction; it must not decide what to
change, open transactions of its own beyond savepoints, nor touch a connection directly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

import numpy as np
from psycopg import sql

from orso_pg import codec
from orso_pg._compiler import Statement
from orso_pg._executor import Executor
from orso_pg._types import Refused
from orso_pg.errors import (
    CompressionError,
    ConnectionLostError,
    DatabaseError,
    DataError,
    LockTimeoutError,
    MigrationError,
    describe_value,
)
from orso_pg.migrate._steps import BuildIndex, CastCheck, Convert, MigrationStep, Run

__all__ = ["BATCH_BYTES", "BATCH_ROWS", "Progress", "apply_step", "batch_size"]

Progress = Callable[[str, int, int], object]
"""Called as ``progress(label, rows_done, rows_total)`` while rows are converted."""

BATCH_ROWS: Final = 2000
BATCH_BYTES: Final = 64 * 1024 * 1024
_GROWTH: Final = 32

# SQLSTATEs meaning "there is no way to compare the value after the cast with the one
# before": no cast back (42846) or no equality operator (42883). The forward cast still runs.
_NO_ROUND_TRIP: Final = frozenset({"42846", "42883"})

_FINDER = sql.SQL(
    "CREATE OR REPLACE FUNCTION pg_temp.orso_pg_first_failure(scan text, test text)"
    " RETURNS text LANGUAGE plpgsql AS $f$"
    " DECLARE r record;"
    " BEGIN"
    "  FOR r IN EXECUTE scan LOOP"
    "   BEGIN"
    "    EXECUTE test USING r.v;"
    "   EXCEPTION WHEN others THEN"
    "    RETURN r.v::text || E'\\n' || SQLERRM;"
    "   END;"
    "  END LOOP;"
    "  RETURN NULL;"
    " END $f$"
)
_FIND = sql.SQL("SELECT pg_temp.orso_pg_first_failure(%s, %s)")


def apply_step(ex: Executor, step: MigrationStep, *, progress: Progress | None = None) -> None:
    """Run every action of *step*."""
    for action in step.actions:
        if isinstance(action, Run):
            ex.execute(action.stmt)
        elif isinstance(action, CastCheck):
            _cast(ex, action)
        elif isinstance(action, Convert):
            _convert(ex, action, progress)
        else:
            _build_index(ex, action)


# --- type changes -----------------------------------------------------------------------------


def _cast(ex: Executor, check: CastCheck) -> None:
    where = f"{check.table}: cannot change column {check.column} from {check.source} to "
    where += check.target
    if check.lossless is not None:
        row = None
        try:
            with ex.transaction():
                row = ex.fetch_one(check.lossless, table=check.table)
        except DataError as exc:
            raise _first_failure(ex, check, where) from exc
        except DatabaseError as exc:
            if exc.sqlstate not in _NO_ROUND_TRIP:
                raise
        if row is not None:
            msg = (
                f"{where}: the value {row[0]!r} would become {row[1]!r}; pass "
                "allow_data_loss=True to convert anyway"
            )
            raise MigrationError(msg, table=check.table, column=check.column, value=row[0])
    try:
        with ex.transaction():
            ex.execute(check.alter, table=check.table)
    except DataError as exc:
        raise _first_failure(ex, check, where) from exc
    except (LockTimeoutError, ConnectionLostError):
        raise
    except DatabaseError as exc:
        msg = f"{where}: {exc}"
        raise MigrationError(msg, table=check.table, column=check.column) from exc


def _first_failure(ex: Executor, check: CastCheck, where: str) -> MigrationError:
    """Return the error naming a value of the column the cast fails on."""
    ex.execute(Statement(_FINDER))
    found = ex.scalar(
        Statement(_FIND, (check.scan.as_string(None), check.test.as_string(None))),
        table=check.table,
    )
    if found is None:
        return MigrationError(f"{where}: a value does not convert", table=check.table)
    value, _, reason = str(found).partition("\n")
    msg = f"{where}: the value {value!r} does not convert ({reason})"
    return MigrationError(msg, table=check.table, column=check.column, value=value)


# --- compressed arrays ------------------------------------------------------------------------


def _convert(ex: Executor, conv: Convert, progress: Progress | None) -> None:
    for stmt in conv.before:
        ex.execute(stmt, table=conv.table)
    row = ex.fetch_one(
        Statement(
            sql.SQL(
                "SELECT count(*), coalesce(max(pg_column_size({})), 0) FROM ({}) AS stored"
            ).format(sql.Identifier(conv.column.name), conv.select.query)
        ),
        table=conv.table,
    )
    assert row is not None  # noqa: S101 - an aggregate always returns a row
    total, widest = int(row[0]), int(row[1])
    batch_rows = batch_size(widest)
    column = conv.column
    change = _encoder(conv) if conv.source_dtype is not None else _decoder(conv)
    types = ["text", column.type.copy_name]
    done = 0
    rows = ex.stream(conv.select, batch_size=batch_rows, table=conv.table)
    for batch in _batches(rows, batch_rows):
        ex.copy_in(conv.copy, types, [(key, change(key, value)) for key, value in batch])
        done += len(batch)
        if progress is not None:
            progress(f"{conv.table}.{column.name}", done, total)
    for stmt in conv.after:
        ex.execute(stmt, table=conv.table)


def batch_size(widest: int) -> int:
    """Return how many rows to convert at once when the widest stored value is *widest* bytes.

    A stored value grows when it becomes Python objects (a float array about fourfold, a
    compressed frame by its compression ratio on top), so batches are sized to keep that
    growth within :data:`BATCH_BYTES`, between 1 and :data:`BATCH_ROWS` rows.
    """
    return max(1, min(BATCH_ROWS, BATCH_BYTES // max(1, widest * _GROWTH)))


def _batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _refuse(conv: Convert, key: str, value: object, reason: object) -> MigrationError:
    msg = (
        f"{conv.table}: cannot convert column {conv.column.name} of the row at {key}: "
        f"{reason} (value {describe_value(value)})"
    )
    return MigrationError(msg, table=conv.table, column=conv.column.name, value=value)


def _encoder(conv: Convert) -> Callable[[str, Any], Any]:
    dtype = np.dtype(conv.source_dtype)
    dump = conv.column.type.dump

    def encode(key: str, value: Any) -> Any:
        if _has_null(value):
            raise _refuse(conv, key, value, "a NULL element cannot be stored in a codec frame")
        try:
            return dump(np.asarray(value, dtype=dtype))
        except (Refused, CompressionError, ValueError, TypeError) as exc:
            raise _refuse(conv, key, value, exc) from exc

    return encode


def _decoder(conv: Convert) -> Callable[[str, Any], Any]:
    dump = conv.column.type.dump

    def decode(key: str, value: Any) -> Any:
        try:
            return dump(codec.decode(bytes(value)))
        except (Refused, CompressionError, ValueError, TypeError) as exc:
            raise _refuse(conv, key, value, exc) from exc

    return decode


def _has_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, list):
        if value and isinstance(value[0], list):  # a dimension of a rectangular array
            return any(_has_null(v) for v in value)
        return None in value  # a row of scalars: one pass in C
    return False


# --- concurrent index builds ------------------------------------------------------------------

_INVALID = sql.SQL(
    "SELECT NOT i.indisvalid FROM pg_catalog.pg_index i"
    " JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = %s"
)


def _build_index(ex: Executor, build: BuildIndex) -> None:
    try:
        ex.execute(build.stmt, table=build.table)
    except ConnectionLostError:
        raise
    except DatabaseError as exc:
        left = ex.scalar(Statement(_INVALID, (build.schema, build.name)), table=build.table)
        cleanup = ""
        if left:
            ex.execute(
                Statement(
                    sql.SQL("DROP INDEX IF EXISTS {}").format(
                        sql.Identifier(build.schema, build.name)
                    )
                ),
                table=build.table,
            )
            cleanup = "; the invalid index it left behind was dropped"
        msg = f"{build.table}: could not build index {build.name}: {exc}{cleanup}"
        raise MigrationError(msg, table=build.table) from exc
