"""Partitions at run time: made on demand before rows are written, listed, dropped and moved.

Owns what writes do for a partitioned model before they send rows (find the ranges or values
the rows need, make the missing partitions under a lock, in the writer's transaction) and the
class methods ``partitions``, ``create_partitions``, ``drop_partitions_before`` and
``move_partitions_before``. It must not build SQL text itself beyond catalog reads
(:mod:`orso_pg.migrate._placement` owns the DDL) nor touch a connection: statements go through
the :class:`~orso_pg._executor.Executor` a session hands it.

Two loaders may need the same new partition at once: each takes a transaction-level advisory
lock keyed on the parent table before it looks again and creates what is still missing, so
the second waits for the first to commit and then finds the partition there. Partitions are
made with ``CREATE TABLE ... (LIKE parent)`` and ``ATTACH PARTITION``, which locks the parent
in SHARE UPDATE EXCLUSIVE mode only: readers and writers of other partitions go on.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import attrs
from psycopg import sql

from orso_pg import _partition
from orso_pg._compiler import Statement
from orso_pg._executor import Executor
from orso_pg._partition import PartitionInfo, RangePartitioning
from orso_pg._schema import TableMeta
from orso_pg._types import Refused
from orso_pg.errors import CheckViolationError, QueryError, ValidationError
from orso_pg.migrate import _placement as ddl
from orso_pg.query._expressions import is_expression
from orso_pg.session._database import Session
from orso_pg.session._pipeline import Pipeline, Step

__all__ = [
    "create_partitions",
    "drop_partitions_before",
    "ensure_rows",
    "list_partitions",
    "move_partitions_before",
    "ready",
    "update_moving",
]

# The first key of the advisory lock guarding partition creation ('orso' in ASCII); the
# second is the parent table's OID.
_LOCK_CLASS: Final = 0x6F72736F
_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s::int4, %s::int4)")

_MISSING = sql.SQL(
    "SELECT p.oid::int8, n.nspname::text, p.relkind::text,"
    " ARRAY(SELECT x FROM unnest(%s::text[]) AS x WHERE NOT EXISTS ("
    "  SELECT 1 FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
    "  WHERE i.inhparent = p.oid AND c.relname = x)),"
    " (SELECT d.relname::text FROM pg_catalog.pg_partitioned_table pt"
    "  JOIN pg_catalog.pg_class d ON d.oid = pt.partdefid WHERE pt.partrelid = p.oid),"
    " (SELECT dn.nspname::text FROM pg_catalog.pg_partitioned_table pt"
    "  JOIN pg_catalog.pg_class d ON d.oid = pt.partdefid"
    "  JOIN pg_catalog.pg_namespace dn ON dn.oid = d.relnamespace WHERE pt.partrelid = p.oid)"
    " FROM pg_catalog.pg_class p JOIN pg_catalog.pg_namespace n ON n.oid = p.relnamespace"
    " WHERE p.oid = %s::regclass"
)

# Whether any foreign key references the table.
_REFERENCED = sql.SQL(
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint"
    " WHERE contype = 'f' AND confrelid = %s::oid)"
)

# The stored columns of a table, in order: what moving rows between partitions copies.
_STORED = sql.SQL(
    "SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute a"
    " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped"
    " AND a.attgenerated = ''"
)

_PARTITIONS = sql.SQL(
    "SELECT c.relname::text, n.nspname::text, pg_catalog.pg_get_expr(c.relpartbound, c.oid),"
    " c.reltuples::float8, ts.spcname::text"
    " FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = c.reltablespace"
    " WHERE i.inhparent = %s::regclass ORDER BY c.relname"
)

_INDEXES = sql.SQL(
    "SELECT ic.relname::text, coalesce(ts.spcname, '')::text FROM pg_catalog.pg_index i"
    " JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid"
    " LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = ic.reltablespace"
    " WHERE i.indrelid = %s::regclass ORDER BY ic.relname"
)

# Partitions known to exist, per connection: a write that finds all of its partitions here
# skips the catalog. Only what a committed transaction made is recorded.
_KNOWN: weakref.WeakKeyDictionary[Any, set[tuple[str, str]]] = weakref.WeakKeyDictionary()
_KNOWN_LOCK = threading.Lock()


@attrs.frozen
class _Wanted:
    """A partition rows need: its name, its bound clause and the condition of its rows."""

    name: str
    bound: sql.Composable
    rows: sql.Composable


def _label(meta: TableMeta, table: str | None) -> str:
    return table if table is not None else meta.name


def _parent_text(meta: TableMeta, table: str | None) -> str:
    return meta.qualified(table).as_string(None)


# --- which partitions rows need ---------------------------------------------------------------


def _column_values(meta: TableMeta, rows: Sequence[Any], names: Sequence[str] | None) -> list[Any]:
    spec = meta.placement.partitioning
    assert spec is not None  # noqa: S101 - callers check the model is partitioned
    column = spec.column
    if names is None:
        try:
            return list(map(operator.attrgetter(column), rows))
        except AttributeError:
            return [getattr(r, column, None) for r in rows]
    index = names.index(column) if column in names else None
    if index is not None and set(map(type, rows)) <= {tuple, list}:
        # Tuples and lists only (the common case): the values are taken in a C loop.
        try:
            return list(map(operator.itemgetter(index), rows))
        except IndexError:
            pass  # a short row: the careful loop below skips it, and the write names it
    out: list[Any] = []
    for r in rows:
        if isinstance(r, Mapping):
            out.append(r.get(column))
        elif index is not None:
            try:
                out.append(r[index])
            except (IndexError, TypeError, KeyError):
                out.append(None)
    return out


def _normalised(
    meta: TableMeta, values: Iterable[Any], native: type | tuple[type, ...]
) -> list[Any]:
    """Return *values* as the Python type the partition arithmetic takes; skip the others.

    A value of another type (a numpy datetime64, a string) goes through the column's own
    check; one it refuses is skipped here, and the write names it.
    """
    ctype = meta.placement.column_type
    assert ctype is not None  # noqa: S101 - set with the partitioning
    out = []
    for v in values:
        if v is None:
            continue
        if isinstance(v, native) and not (native is int and isinstance(v, bool)):
            out.append(v)
            continue
        try:
            stored = ctype.store(v)
        except (Refused, TypeError, ValueError, OverflowError):
            continue
        if isinstance(stored, native):
            out.append(stored)
    return out


def wanted(meta: TableMeta, table: str | None, values: Iterable[Any]) -> list[_Wanted]:
    """Return the partitions that rows whose partition column holds *values* need."""
    spec = meta.placement.partitioning
    label = _label(meta, table)
    if isinstance(spec, RangePartitioning):
        ranges = meta.placement.ranges
        assert ranges is not None  # noqa: S101 - resolved with the partitioning
        given = values if isinstance(values, Sequence) else list(values)
        keys = ranges.fast_keys(given) if _plausible(ranges, given) else None
        if keys is None:
            native: type | tuple[type, ...] = {"time": dt.datetime, "date": dt.date, "int": int}[
                ranges.kind
            ]
            keys = ranges.keys(_normalised(meta, given, native))
        return [_range_wanted(meta, label, k) for k in sorted(keys)]
    ctype = meta.placement.column_type
    assert ctype is not None  # noqa: S101 - set with the partitioning
    assert spec is not None  # noqa: S101 - callers check the model is partitioned
    found: set[Any] = set()
    for v in set(values):
        if v is None:
            continue
        try:
            found.add(ctype.dump(v))
        except (Refused, TypeError, ValueError):
            continue
    return [
        _Wanted(
            _partition.partition_name(label, _partition.value_suffix(v)),
            ddl.list_bound([v]),
            ddl.list_rows(spec.column, [v]),
        )
        for v in sorted(found, key=lambda v: (type(v).__name__, str(v)))
    ]


def _plausible(ranges: _partition.Ranges, values: Sequence[Any]) -> bool:
    """Whether the C-loop path may run: the first and last values have the right type.

    A naive datetime would pass ``timestamp()`` in local time, so the ends are checked for a
    zone; a wrong value in the middle still raises there, or is refused by the write.
    """
    if not values:
        return False
    ends = (values[0], values[-1])
    if ranges.kind == "time":
        return all(isinstance(v, dt.datetime) and v.tzinfo is not None for v in ends)
    if ranges.kind == "date":
        return all(type(v) is dt.date for v in ends)
    return all(type(v) is int for v in ends)


def _range_wanted(meta: TableMeta, label: str, key: int) -> _Wanted:
    ranges = meta.placement.ranges
    spec = meta.placement.partitioning
    assert ranges is not None  # noqa: S101 - range partitioning
    assert spec is not None  # noqa: S101 - range partitioning
    low, high = ranges.lower(key), ranges.upper(key)
    return _Wanted(
        _partition.partition_name(label, ranges.suffix(key)),
        ddl.range_bound(low, high),
        ddl.range_rows(spec.column, low, high),
    )


# --- making them ------------------------------------------------------------------------------


def ensure(
    ex: Executor,
    meta: TableMeta,
    table: str | None,
    needed: Sequence[_Wanted],
    seen: set[str] | None = None,
) -> list[str]:
    """Make the partitions of *needed* that do not exist yet; return the names made.

    *seen*, when given, holds the partitions this transaction already made or found: they
    are not looked up again, and those of *needed* are added to it.

    Runs in the caller's transaction (a transaction of its own on an autocommit connection):
    the advisory lock is held until it ends, so a concurrent loader waits, then finds them.

    When the table has a DEFAULT partition, the rows it holds of a new partition's range (or
    value) are moved into the new partition before it is attached, in the same transaction:
    PostgreSQL refuses to attach a partition whose rows the default partition still holds.
    The default partition is locked (ACCESS EXCLUSIVE, as attaching takes anyway) first, so
    no row of the range can reach it between the move and the attach. When foreign keys
    reference the table, such rows are not moved (the delete would fire them): a
    :class:`~orso_pg.errors.QueryError` says so and what to do.

    Raises:
        QueryError: the table is not partitioned, or rows the DEFAULT partition holds cannot
            move to the new partition.
    """
    if seen is not None:
        needed = [w for w in needed if w.name not in seen]
    if not needed:
        return []
    parent = _parent_text(meta, table)
    known = _KNOWN.get(ex.conn)
    if known is not None and all((parent, w.name) in known for w in needed):
        return []
    label = _label(meta, table)
    names = [w.name for w in needed]
    probe = Statement(_MISSING, (names, parent))
    row = ex.fetch_one(probe, table=label)
    assert row is not None  # noqa: S101 - a missing table raises instead
    oid, schema, kind, missing = int(row[0]), str(row[1]), str(row[2]), list(row[3])
    if kind != "p":
        msg = (
            f"{label} is not a partitioned table, but {meta.cls.__name__} declares partition_by=; "
            "it was created before the declaration. Migrations refuse to partition a table in "
            f"place: {meta.cls.__name__}.copy_and_swap(db) copies the rows into a partitioned "
            "table and swaps the names"
        )
        raise QueryError(msg, table=label)
    made: list[str] = []
    if missing:
        by_name = {w.name: w for w in needed}
        parent_ident = sql.Identifier(schema, label)
        with ex.transaction():
            ex.execute(Statement(_LOCK, (_LOCK_CLASS, oid % 2**31)), table=label)
            row = ex.fetch_one(probe, table=label)
            assert row is not None  # noqa: S101 - it was there a moment ago, and we lock it
            default = None if row[4] is None else sql.Identifier(str(row[5]), str(row[4]))
            columns: list[str] | None = None
            if default is not None and row[3]:
                ex.execute(ddl.lock_exclusive(default), table=label)
                columns = _movable(ex, label, oid, default)
            for name in row[3]:
                child = sql.Identifier(schema, name)
                ex.execute(
                    ddl.create_like(parent_ident, child, meta.placement.tablespace), table=label
                )
                if default is not None:
                    _take_over(ex, label, default, child, columns, by_name[name])
                ex.execute(
                    ddl.attach_partition(parent_ident, child, by_name[name].bound), table=label
                )
                made.append(name)
    if seen is not None:
        seen.update(names)
    if ex.idle:
        with _KNOWN_LOCK:
            _KNOWN.setdefault(ex.conn, set()).update((parent, n) for n in names)
    return made


def _movable(ex: Executor, label: str, oid: int, default: sql.Identifier) -> list[str] | None:
    """Return the columns a move out of *default* copies, or None when rows must not move.

    Moving a row deletes it from the DEFAULT partition, which would fire the foreign keys
    that reference the table (cascading, or refusing, on rows that point to it).
    """
    if ex.scalar(Statement(_REFERENCED, (oid,)), table=label):
        return None
    found = ex.scalar(Statement(_STORED, (default.as_string(None),)), table=label)
    return list(found or ())


def _take_over(
    ex: Executor,
    label: str,
    default: sql.Identifier,
    child: sql.Identifier,
    columns: list[str] | None,
    needed: _Wanted,
) -> None:
    """Move the rows of *needed*'s range (or value) from the DEFAULT partition into *child*."""
    if columns is not None:
        ex.execute(ddl.move_rows(default, child, columns, needed.rows), table=label)
        return
    if not ex.scalar(ddl.rows_exist(default, needed.rows), table=label):
        return
    msg = (
        f"{label}: the DEFAULT partition {default.as_string(None)} holds rows that belong in the "
        f"new partition {needed.name}, and foreign keys reference {label}, so orso_pg will not "
        "move them (deleting them from the DEFAULT partition would fire those foreign keys: "
        "cascade, or refuse); move those rows out of the DEFAULT partition yourself (or drop "
        "the foreign keys for the move), then make the partition again"
    )
    raise QueryError(msg, table=label)


def ensure_rows(
    ex: Executor,
    meta: TableMeta,
    table: str | None,
    rows: Sequence[Any],
    names: Sequence[str] | None = None,
    seen: set[str] | None = None,
) -> None:
    """Make the partitions *rows* need (instances, or plain rows holding *names*)."""
    if meta.placement.partitioning is None:
        return
    ensure(ex, meta, table, wanted(meta, table, _column_values(meta, rows, names)), seen)


def ready(
    ex: Executor,
    meta: TableMeta,
    table: str | None,
    source: Iterator[Any],
    names: Sequence[str] | None = None,
    seen: set[str] | None = None,
) -> Iterator[Any]:
    """Return a batch chunk's rows, once the partitions they need exist.

    A plain table's chunk streams as it is read; a partitioned table's is read first (one
    chunk, so memory stays bounded) to know which partitions it needs. *seen* is as for
    :func:`ensure`: the chunks of one transaction look up only partitions new to it.
    """
    if meta.placement.partitioning is None:
        return source
    chunk = list(source)
    ensure_rows(ex, meta, table, chunk, names, seen)
    return iter(chunk)


def stale(ex: Executor, meta: TableMeta, table: str | None, exc: Exception) -> bool:
    """Whether a write failed only because a remembered partition is gone.

    The connection's memory of the table's partitions is cleared; the caller may make them
    again and retry, which is safe only outside a transaction (nothing else was undone).
    """
    if _NO_PARTITION not in str(exc):
        return False
    with _KNOWN_LOCK:
        known = _KNOWN.get(ex.conn)
        if known is None:
            return False
        _drop_known(_parent_text(meta, table), [known])
    return ex.idle


def forget(meta: TableMeta, table: str | None, names: Iterable[str]) -> None:
    """Drop *names* from what every connection knows exists (they were dropped)."""
    gone = {(_parent_text(meta, table), n) for n in names}
    with _KNOWN_LOCK:
        for known in list(_KNOWN.values()):
            known.difference_update(gone)


# --- set-based updates that move rows ---------------------------------------------------------

_NO_PARTITION: Final = "no partition of relation"


def update_moving(
    step: Step[int],
    meta: TableMeta,
    table: str | None,
    value: object,
) -> int:
    """Run a set-based update that sets the partition column to *value*; return its count.

    A value the caller gives is known before the update runs: the partition it needs is made
    first, in the update's own transaction (through a pipeline, on a connection of its own,
    as single writes do). An expression (``col("ts") + ...``) is computed by the server row by
    row, so nothing can be made ahead: a row it sends where no partition is fails with a
    :class:`~orso_pg.errors.CheckViolationError` saying how to make the partitions first.
    Outside a pipeline the update runs in a savepoint of its own inside a transaction.
    """
    session = step.session
    computed = is_expression(value)
    if type(session) is Pipeline:
        if not computed:
            needed = wanted(meta, table, [value])
            session._prepare(lambda ex: ensure(ex, meta, table, needed))
        return session._queue_step(step)  # type: ignore[return-value]
    if computed:
        # In a savepoint of its own inside a transaction, so the caller may catch the error
        # (make the partitions, try again) and go on.
        try:
            return step.finish(session._atomic(lambda ex: ex.execute(step.stmt, table=step.label)))
        except CheckViolationError as exc:
            raise _unplaced(meta, table, exc) from exc
    needed = wanted(meta, table, [value])

    def work(ex: Executor) -> int:
        ensure(ex, meta, table, needed)
        return ex.execute(step.stmt, table=step.label)

    try:
        return step.finish(session._atomic(work))
    except CheckViolationError as exc:
        # Another session dropped a partition connections remembered: look again, once.
        if _NO_PARTITION not in str(exc):
            raise
        forget_all(meta, table)
    return step.finish(session._atomic(work))


def forget_all(meta: TableMeta, table: str | None) -> None:
    """Drop every connection's memory of the table's partitions."""
    with _KNOWN_LOCK:
        _drop_known(_parent_text(meta, table), list(_KNOWN.values()))


def _drop_known(parent: str, knowns: Iterable[set[tuple[str, str]]]) -> None:
    """Forget, in each of *knowns* (callers hold the lock), every partition of *parent*."""
    for known in knowns:
        known.difference_update({k for k in known if k[0] == parent})


def _unplaced(meta: TableMeta, table: str | None, exc: CheckViolationError) -> CheckViolationError:
    """Return *exc* told plainly when it is PostgreSQL's "no partition ... found for row"."""
    if _NO_PARTITION not in str(exc):
        return exc
    spec = meta.placement.partitioning
    assert spec is not None  # noqa: S101 - only partitioned models get here
    label = _label(meta, table)
    name = meta.cls.__name__
    why = (
        f"the update computes {spec.column} on the server (an expression), so orso_pg cannot "
        "know beforehand which partitions the new values need"
    )
    if meta.placement.ranges is not None:
        how = (
            f"pre-create them with {name}.create_partitions(start, end, db) covering the new "
            f"values of {spec.column}, then run the update again"
        )
    else:
        how = (
            f"write one row with each new value of {spec.column} first (insert makes its "
            "partition), then run the update again"
        )
    detail = f" ({exc.detail.rstrip('.')})" if exc.detail else ""
    msg = (
        f"{label}: an update moves rows to a {spec.column} that no partition of {label} "
        f"holds{detail}; {why}. To fix: {how}, or declare a DEFAULT partition "
        f"(partition_by=partition.{spec.strategy.lower()}(..., default=True))"
    )
    return CheckViolationError(
        msg,
        sqlstate=exc.sqlstate,
        constraint=exc.constraint,
        detail=exc.detail,
        table=label,
        column=spec.column,
    )


# --- the class methods ------------------------------------------------------------------------


def _partitioned(meta: TableMeta, label: str) -> None:
    if meta.placement.partitioning is None:
        msg = f"{meta.cls.__name__} is not partitioned; declare @table(partition_by=...)"
        raise QueryError(msg, table=label)


def _ranged(meta: TableMeta, label: str, what: str) -> _partition.Ranges:
    _partitioned(meta, label)
    ranges = meta.placement.ranges
    if ranges is None:
        msg = f"{what} works on range partitions; {meta.cls.__name__} is partitioned by list"
        raise QueryError(msg, table=label)
    return ranges


def _bound(meta: TableMeta, label: str, value: object, what: str) -> Any:
    """Check a bound the caller gave against the partition column's type."""
    ranges = meta.placement.ranges
    assert ranges is not None  # noqa: S101 - checked by _ranged
    ok = {
        "time": isinstance(value, dt.datetime) and value.tzinfo is not None,
        "date": isinstance(value, dt.date) and not isinstance(value, dt.datetime),
        "int": isinstance(value, int) and not isinstance(value, bool),
    }[ranges.kind]
    if not ok:
        kind = {"time": "an aware datetime", "date": "a date", "int": "an int"}[ranges.kind]
        spec = meta.placement.partitioning
        assert spec is not None  # noqa: S101 - checked by _ranged
        msg = f"{what} must be {kind}, as the partition column {spec.column} is; got {value!r}"
        raise ValidationError(msg, table=label, column=spec.column, value=value)
    return value


def create_partitions(
    meta: TableMeta, table: str | None, start: object, end: object, session: Session
) -> list[str]:
    """Make every range partition holding a value in ``[start, end)``; return the names made."""
    label = _label(meta, table)
    ranges = _ranged(meta, label, "create_partitions")
    low, high = _bound(meta, label, start, "start"), _bound(meta, label, end, "end")
    if not low < high:
        msg = f"create_partitions: start {low!r} is not before end {high!r}"
        raise ValidationError(msg, table=label, value=(low, high))
    needed = [_range_wanted(meta, label, k) for k in ranges.between(low, high)]
    # An explicit call looks at the catalog, not at what connections remember.
    forget_all(meta, table)
    return session._atomic(lambda ex: ensure(ex, meta, table, needed))


def list_partitions(meta: TableMeta, table: str | None, session: Session) -> list[PartitionInfo]:
    """Return the partitions of the table, ordered by range (or value), the default last."""
    label = _label(meta, table)
    _partitioned(meta, label)
    stmt = Statement(_PARTITIONS, (_parent_text(meta, table),))
    rows = session._read(lambda ex: ex.fetch_all(stmt, table=label))
    found = [_info(meta, r[0], r[2], r[3], r[4]) for r in rows]
    return sorted(found, key=_order)


def _order(info: PartitionInfo) -> tuple[int, str]:
    first = info.lower if info.lower is not None else (info.values[0] if info.values else None)
    if info.default:
        return (2, info.name)
    if first is None:
        return (0, info.name)
    if isinstance(first, dt.datetime):
        return (1, first.astimezone(dt.UTC).isoformat())
    if isinstance(first, int):
        return (1, f"{first + 2**63:020d}")
    return (1, str(first))


_RANGE = re.compile(r"^FOR VALUES FROM \((?P<low>.*)\) TO \((?P<high>.*)\)$", re.DOTALL)
_IN = re.compile(r"^FOR VALUES IN \((?P<values>.*)\)$", re.DOTALL)
_LITERAL = re.compile(r"'((?:[^']|'')*)'|([^,\s]+)")


def _literals(text: str) -> list[str | None]:
    """Split a bound's literals: ``'a''b', 5, MINVALUE`` -> ``["a'b", "5", None]``."""
    out: list[str | None] = []
    for quoted, bare in _LITERAL.findall(text):
        if bare:
            out.append(None if bare.upper() in ("MINVALUE", "MAXVALUE", "NULL") else bare)
        else:
            out.append(quoted.replace("''", "'"))
    return out


def _value(meta: TableMeta, text: str | None) -> Any:
    if text is None:
        return None
    ranges = meta.placement.ranges
    kind = ranges.kind if ranges is not None else None
    ctype = meta.placement.column_type
    try:
        if kind == "time":
            return dt.datetime.fromisoformat(text)
        if kind == "date" or (ctype is not None and ctype.label == "date"):
            return dt.date.fromisoformat(text)
        if kind == "int" or (ctype is not None and ctype.label == "bigint"):
            return int(text)
    except ValueError:
        return text
    if ctype is not None and ctype.label == "boolean":
        return text == "true"
    return text


def _info(
    meta: TableMeta, name: str, bound: str | None, tuples: float | None, space: str | None
) -> PartitionInfo:
    rows = None if tuples is None or tuples < 0 else int(tuples)
    text = (bound or "").strip()
    if text == "DEFAULT":
        return PartitionInfo(name, default=True, rows=rows, tablespace=space)
    found = _RANGE.match(text)
    if found is not None:
        low = _literals(found["low"])
        high = _literals(found["high"])
        return PartitionInfo(
            name,
            lower=_value(meta, low[0] if low else None),
            upper=_value(meta, high[0] if high else None),
            rows=rows,
            tablespace=space,
        )
    listed = _IN.match(text)
    values = tuple(_value(meta, v) for v in _literals(listed["values"])) if listed else ()
    return PartitionInfo(name, values=values, rows=rows, tablespace=space)


def _older(
    meta: TableMeta, table: str | None, cutoff: object, session: Session, what: str
) -> tuple[str, list[tuple[str, str, str | None]]]:
    """Return the parent's schema-less label and the partitions wholly before *cutoff*."""
    label = _label(meta, table)
    _ranged(meta, label, what)
    limit = _bound(meta, label, cutoff, "cutoff")
    stmt = Statement(_PARTITIONS, (_parent_text(meta, table),))
    rows = session._read(lambda ex: ex.fetch_all(stmt, table=label))
    old = []
    for name, schema, bound, tuples, space in rows:
        info = _info(meta, name, bound, tuples, space)
        # Only a partition whose every row is older than the cutoff: its upper bound (which
        # is exclusive) is at most the cutoff. The default partition has none.
        if not info.default and info.upper is not None and info.upper <= limit:
            old.append((info, schema))
    old.sort(key=lambda found: _order(found[0]))
    return label, [(info.name, schema, info.tablespace) for info, schema in old]


def drop_partitions_before(
    meta: TableMeta, table: str | None, cutoff: object, session: Session
) -> list[str]:
    """Drop the range partitions holding only rows older than *cutoff*; return their names."""
    label, old = _older(meta, table, cutoff, session, "drop_partitions_before")
    if not old:
        return []

    def work(ex: Executor) -> list[str]:
        for name, schema, _ in old:
            ex.execute(ddl.drop_partition(sql.Identifier(schema, name)), table=label)
        return [name for name, _, _ in old]

    dropped = session._atomic(work)
    forget(meta, table, dropped)
    return dropped


def move_partitions_before(
    meta: TableMeta, table: str | None, cutoff: object, tablespace: str, session: Session
) -> list[str]:
    """Move the partitions older than *cutoff*, and their indexes, to *tablespace*.

    Returns the names of the partitions moved (those already there are left alone). Each
    move rewrites the partition's files under an exclusive lock on it.
    """
    label = _label(meta, table)
    given: object = tablespace
    if not isinstance(given, str) or not given:
        msg = f"tablespace must be a tablespace name, not {tablespace!r}"
        raise ValidationError(msg, table=label, value=tablespace)
    _, old = _older(meta, table, cutoff, session, "move_partitions_before")
    todo = [(name, schema) for name, schema, space in old if space != tablespace]
    if not todo:
        return []

    def work(ex: Executor) -> list[str]:
        for name, schema in todo:
            child = sql.Identifier(schema, name)
            ex.execute(ddl.move_table(child, tablespace), table=label)
            indexes = ex.fetch_all(Statement(_INDEXES, (child.as_string(None),)), table=label)
            for index, space in indexes:
                if space != tablespace:
                    ex.execute(
                        ddl.move_index(sql.Identifier(schema, index), tablespace), table=label
                    )
        return [name for name, _ in todo]

    return session._atomic(work)
