"""Batch operations: many rows in a few statements, at the speed of COPY.

Owns ``batch_create`` (``batch_insert``), ``batch_upsert``, ``batch_update``, ``batch_delete`` and
``batch_delete_cascade``: reading any iterable in chunks (so a generator of millions of rows runs
in flat memory), grouping a chunk's rows by the server-filled columns they leave ``None``, staging
rows in a temporary table, the transaction policy (one transaction by default, a commit per chunk
on request), progress reports, and turning a failure into an error that names the row's position,
the column and the value. It must not build SQL text (:mod:`orso_pg.batch._sql` does) nor touch a
connection (sessions hand it an :class:`~orso_pg._executor.Executor`).

Rows go through ``COPY ... FROM STDIN (FORMAT BINARY)`` without a full check of every value; the
few values psycopg's binary dumpers would store wrongly are checked on the way
(:mod:`orso_pg.batch._rows`). When PostgreSQL or a dumper refuses a row, the batch is rolled back
and the row is found: by the index psycopg failed at, or by the ``COPY <table>, line N`` context
PostgreSQL reports, or, for errors of the statement that applies staged rows, by the key or the
column in the error.

Errors raised by a batch carry two extra attributes: ``position``, the 0-based position in the
input of the row at fault (None when it cannot be told), and ``committed``, the number of input
rows (counting the ``start`` rows skipped) whose work is committed, which is where a rerun with
``start=`` picks up.
"""

from __future__ import annotations

import functools
import gc
import itertools
import operator
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from typing import Any, Final, Generic, Literal, NoReturn, TypedDict, TypeVar, Unpack

import attrs

from orso_pg import _compiler as compiler
from orso_pg import _operations as ops
from orso_pg import _partitions as partitions
from orso_pg._executor import CopyRowError, Executor
from orso_pg._schema import TableMeta
from orso_pg.batch import _columnar as batch_columnar
from orso_pg.batch import _rows as batch_rows
from orso_pg.batch import _sql as batch_sql
from orso_pg.batch._progress import ProgressOption, reporter
from orso_pg.errors import (
    DatabaseError,
    NotNullViolationError,
    OrsoError,
    QueryError,
    ValidationError,
    describe_value,
)
from orso_pg.query._expressions import (
    Assignments,
    UpdateColumns,
    incoming_names,
    update_assignments,
    upsert_assignments,
)
from orso_pg.session._database import Session

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BatchOptions",
    "UpsertResult",
    "delete",
    "insert",
    "insert_rows",
    "update",
    "upsert",
    "upsert_rows",
]

DEFAULT_CHUNK_SIZE: Final = 50_000
"""Rows per COPY. Large enough that the per-statement cost is a few percent at most (measured:
10,000-row chunks cost 5-10% against one COPY), small enough that the chunk of instances kept to
name a bad row stays in the tens of megabytes for market-data rows; lower it for rows holding
large arrays."""

M = TypeVar("M")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class BatchOptions(TypedDict, total=False):
    """Options every batch operation takes, by keyword.

    Attributes:
        chunk_size: Rows per COPY (and per staged statement); 50,000 by default.
        chunked: Commit after every chunk (inside a ``Transaction``: release a savepoint per
            chunk) instead of running the whole batch as one transaction. A failure then keeps
            the chunks before it; the error's ``committed`` says where to resume with ``start``.
        start: Skip this many rows of the input first (to resume a chunked batch); positions
            and ``committed`` in errors still count from the input's first row.
        progress: A function called with the number of rows this call has done after each
            chunk (the ``start`` rows skipped are not counted); ``True``
            for a tqdm bar; ``False`` for nothing; by default (None) a bar when stderr is a
            terminal, tqdm is installed and the batch runs for more than a second.
        timeout: Seconds each statement of the batch may run: the server cancels it after
            that (``SET LOCAL statement_timeout``, :class:`QueryCanceledError`), and the client
            gives up on a silent server 5 s later (:class:`ServerUnavailableError`). It ends
            with the batch and never reaches the next user of the connection.
    """

    chunk_size: int
    chunked: bool
    start: int
    progress: ProgressOption
    timeout: float


@attrs.frozen
class UpsertResult:
    """What ``batch_upsert`` did.

    Attributes:
        inserted: Rows inserted.
        updated: Existing rows updated.
        skipped: Input rows not written: superseded by a later row with the same key, or, with
            ``on_conflict="nothing"``, whose key already existed.
    """

    inserted: int = 0
    updated: int = 0
    skipped: int = 0

    @property
    def rows(self) -> int:
        """The number of input rows."""
        return self.inserted + self.updated + self.skipped

    def __add__(self, other: UpsertResult) -> UpsertResult:
        return UpsertResult(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.skipped + other.skipped,
        )


# --- errors -----------------------------------------------------------------------------------


def _mark(
    err: OrsoError, *, position: int | None = None, committed: int | None = None
) -> OrsoError:
    """Record the row position (prefixed to the message) and the committed count on *err*."""
    if position is not None and err.position is None:
        err.message = f"row {position} of the batch: {err.message}"
        err.args = (err.message,)
        err.position = position
    if committed is not None:
        err.committed = committed
    return err


def _unsent(
    meta: TableMeta,
    label: str,
    names: tuple[str, ...],
    obj: object,
    position: int,
    cause: BaseException | None,
) -> NoReturn:
    """Raise the error for the row a COPY could not send (*cause* is what stopped it).

    The row at fault is the last one its feed read: the feed stopped at it, or psycopg refused
    the row it had just yielded. The column check names the bad value; when the row passes it
    and *cause* is not psycopg's, the caller's own iterable raised, and that propagates as is.
    """
    err: OrsoError | None = batch_rows.diagnose(meta, label, obj, names)
    if err is None:
        if cause is not None and not _from_driver(cause):
            raise cause from None
        # The full check passed, so it is psycopg that refused the row; say what it said.
        msg = f"{label}: {type(cause).__name__}: {cause}"
        err = ValidationError(msg, table=label, value=obj)
    raise _mark(err, position=position) from cause


def _from_driver(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("psycopg")


_COPY_CONTEXT = re.compile(r"^COPY .*?, line (\d+)(?:, column (.+?))?(?::\s.*)?$", re.MULTILINE)
_KEY_DETAIL = re.compile(r"Key \((?P<cols>.+?)\)=\((?P<vals>.*)\)")


def _diag(err: BaseException, field: str) -> str | None:
    diag = getattr(err.__cause__, "diag", None)
    value = getattr(diag, field, None)
    return value if isinstance(value, str) else None


def _locate(
    err: DatabaseError,
    meta: TableMeta,
    label: str,
    group: _Group,
    offset: int,
    found: tuple[int, str | None] | None,
) -> NoReturn:
    """Raise the error for the row of *group* PostgreSQL refused, *found* by the caller.

    The error names the row's position, column and value; *err* is raised as it is when the
    row was not found.
    """
    if found is None:
        raise err
    i, column = found
    obj, position = group.rows[i], group.position(i, offset)
    refused = batch_rows.diagnose(meta, label, obj, group.names)
    if refused is not None:
        # Our own check refuses it too: report it as the ValidationError the single-row path
        # would have raised, with PostgreSQL's error kept as the cause.
        raise _mark(refused, position=position) from err.__cause__
    column = column or err.column
    if column is not None and column in meta.by_name:
        value = getattr(obj, column)
        err.column = column
        err.value, err.has_value = value, True
        err.message = f"{err.message} ({label}.{column} = {describe_value(value)})"
    raise _mark(err, position=position) from err.__cause__


def _copy_line(err: DatabaseError, meta: TableMeta) -> tuple[int | None, str | None]:
    context = _diag(err, "context")
    match = _COPY_CONTEXT.search(context or "")
    if match is None:
        return None, None
    column = match[2]
    return int(match[1]), column if column in meta.by_name else None


def _find_row(
    err: DatabaseError, meta: TableMeta, members: Sequence[object]
) -> tuple[int, str | None] | None:
    """Find the staged row a set-based statement failed on, from the column or key reported."""
    name = err.column
    if isinstance(err, NotNullViolationError) and name is not None and name in meta.by_name:
        for i, obj in enumerate(members):
            if getattr(obj, name) is None:
                return i, name
        return None
    match = _KEY_DETAIL.search(err.detail or "")
    if match is None:
        return None
    cols = [c.strip('"') for c in match["cols"].split(", ")]
    vals = match["vals"].split(", ")
    if len(cols) != len(vals) or any(c not in meta.by_name for c in cols):
        return None
    for i, obj in enumerate(members):
        if all(batch_rows.key_text(getattr(obj, c)) == v for c, v in zip(cols, vals, strict=True)):
            return i, cols[0]
    return None


# --- chunks and groups ------------------------------------------------------------------------


_END: Final = object()


@attrs.frozen
class _Group:
    """Rows of one chunk that send the same columns; ``index`` maps back to chunk positions."""

    names: tuple[str, ...]
    rows: Sequence[Any]
    index: Sequence[int] | None

    def position(self, i: int, offset: int) -> int:
        """Return the input position of the group's row *i*, the chunk starting at *offset*."""
        return offset + (self.index[i] if self.index is not None else i)


def _compose(outer: Sequence[int] | None, inner: Sequence[int] | None) -> Sequence[int] | None:
    if outer is None:
        return inner
    if inner is None:
        return outer
    return [outer[i] for i in inner]


def _not_instances(meta: TableMeta, label: str, rows: Sequence[object], offset: int) -> None:
    for i, obj in enumerate(rows):
        if not isinstance(obj, meta.cls):
            err = batch_rows.diagnose(meta, label, obj)
            if err is not None:
                raise _mark(err, position=offset + i)


def _values(
    meta: TableMeta, label: str, rows: Sequence[object], offset: int, names: tuple[str, ...]
) -> list[Any]:
    """Return every row's value of *names*, or its tuple of values when there are several."""
    getter = operator.attrgetter(*names)
    try:
        return list(map(getter, rows))
    except AttributeError:
        _not_instances(meta, label, rows, offset)
        raise


def _groups(
    meta: TableMeta,
    label: str,
    rows: Sequence[object],
    offset: int,
    only: frozenset[str] | None = None,
) -> list[_Group]:
    """Split *rows* by which server-filled columns they leave None.

    A server-filled column (generated key, timestamp, server default) is sent only for rows
    that hold a value; the rows holding None get the server's value. Most batches are uniform
    and make one group.
    """
    wanted = [c for c in meta.columns if only is None or c.name in only]
    present: set[str] = set()
    mixed: list[tuple[str, list[Any]]] = []
    for col in wanted:
        if not col.generated:
            continue
        values = _values(meta, label, rows, offset, (col.name,))
        nones = values.count(None)
        if nones == 0:
            present.add(col.name)
        elif nones < len(values):
            mixed.append((col.name, values))

    def names(extra: Iterable[str] = ()) -> tuple[str, ...]:
        chosen = present.union(extra)
        return tuple(c.name for c in wanted if not c.generated or c.name in chosen)

    if not mixed:
        return [_Group(names(), rows, None)]
    buckets: dict[tuple[bool, ...], list[int]] = {}
    masks = zip(*[[v is not None for v in values] for _, values in mixed], strict=True)
    for i, mask in enumerate(masks):
        buckets.setdefault(mask, []).append(i)
    return [
        _Group(
            names(name for (name, _), on in zip(mixed, mask, strict=True) if on),
            [rows[i] for i in index],
            index,
        )
        for mask, index in buckets.items()
    ]


def _last_wins(
    meta: TableMeta, label: str, rows: Sequence[object], offset: int, key: tuple[str, ...]
) -> tuple[Sequence[object], Sequence[int] | None]:
    """Drop every row whose key a later row of the chunk repeats (rows with a NULL key stay)."""
    keys = _values(meta, label, rows, offset, key)
    try:
        kept = _last_of_each(keys, len(key))
    except TypeError:
        for i, obj in enumerate(rows):
            err = batch_rows.diagnose(meta, label, obj, key)
            if err is not None:
                raise _mark(err, position=offset + i) from None
        raise
    if kept is None:
        return rows, None
    return [rows[i] for i in kept], kept


def _last_of_each(keys: list[Any], width: int) -> list[int] | None:
    """Return the positions of the last row of each key (and of every NULL key), in order.

    None when no key repeats. *width* is the number of key columns: a key of several columns
    is a tuple, NULL when any of its values is. Raises TypeError on a key that cannot be
    compared.
    """
    try:
        distinct = len(set(keys))
    except TypeError:  # an array, JSON or bytearray key: compare it by value
        keys = [_comparable(k) for k in keys]
        distinct = len(set(keys))
    if distinct == len(keys):
        return None
    last: dict[Any, int] = {}
    kept: list[int] = []
    for i, value in enumerate(keys):
        if value is None or (width > 1 and None in value):
            kept.append(i)  # NULL never conflicts: every such row is its own row
        else:
            last[value] = i
    kept.extend(last.values())
    kept.sort()
    return kept


# --- one COPY ---------------------------------------------------------------------------------


def _copy(
    ex: Executor,
    meta: TableMeta,
    table: str | None,
    label: str,
    group: _Group,
    offset: int,
    *,
    stage: bool,
) -> int:
    shape = batch_rows.shape(meta, group.names)
    feed = batch_rows.feeder(meta, group.names)
    query = batch_sql.copy(meta, table, group.names, binary=shape.binary, stage=stage)
    read: list[Any] = []
    try:
        return ex.copy_rows(query, shape.types, feed(group.rows, read), table=label)
    except CopyRowError as exc:
        i = len(read) - 1
        _unsent(meta, label, group.names, read[i], group.position(i, offset), exc.__cause__)
    except DatabaseError as exc:
        _copy_failed(exc, meta, label, group, offset)


def _copy_failed(
    exc: DatabaseError, meta: TableMeta, label: str, group: _Group, offset: int
) -> NoReturn:
    """Raise the error for a COPY PostgreSQL refused, naming the row when it can be found."""
    line, column = _copy_line(exc, meta)
    if line is not None and 0 < line <= len(group.rows):
        found: tuple[int, str | None] | None = (line - 1, column)
    else:
        # Foreign keys are checked at the end of the statement, out of any line's context.
        found = _find_row(exc, meta, group.rows)
    _locate(exc, meta, label, group, offset, found)


def _stream(
    ex: Executor,
    meta: TableMeta,
    table: str | None,
    label: str,
    source: Iterator[Any],
    rows: list[Any],
    offset: int,
    *,
    stage: bool,
    only: frozenset[str] | None = None,
) -> tuple[int, _Group, list[int]]:
    """COPY the rows of *source* as it yields them, recording every instance in *rows*.

    The first row decides which server-filled columns are sent; rows that differ are not sent
    but returned (their indexes in *rows*) for the caller to send as groups of their own.
    Returns the rows loaded, the group sent and the deferred indexes.
    """
    first = next(source)
    if not isinstance(first, meta.cls):
        rows.append(first)
        _not_instances(meta, label, rows, offset)
    wanted = [c for c in meta.columns if only is None or c.name in only]
    checked = tuple(c.name for c in wanted if c.generated)
    names = tuple(c.name for c in wanted if not c.generated or getattr(first, c.name) is not None)
    shape = batch_rows.shape(meta, names)
    feed = batch_rows.feeder(meta, names, checked)
    query = batch_sql.copy(meta, table, names, binary=shape.binary, stage=stage)
    deferred: list[int] = []

    def sent() -> _Group:
        if not deferred:
            return _Group(names, rows, None)
        skip = set(deferred)
        index = [i for i in range(len(rows)) if i not in skip]
        return _Group(names, [rows[i] for i in index], index)

    stream = feed(itertools.chain((first,), source), rows, deferred.append)
    try:
        loaded = ex.copy_rows(query, shape.types, stream, table=label)
    except CopyRowError as exc:
        i = len(rows) - 1
        _unsent(meta, label, names, rows[i], offset + i, exc.__cause__)
    except DatabaseError as exc:
        _copy_failed(exc, meta, label, sent(), offset)
    return loaded, sent(), deferred


def _deferred_groups(
    meta: TableMeta,
    label: str,
    rows: list[Any],
    deferred: list[int],
    offset: int,
    only: frozenset[str] | None = None,
) -> list[_Group]:
    if not deferred:
        return []
    rest = [rows[i] for i in deferred]
    return [
        _Group(part.names, part.rows, _compose(deferred, part.index))
        for part in _groups(meta, label, rest, offset, only)
    ]


def _comparable(value: object) -> object:
    """Return *value* as a hashable that is equal where PostgreSQL finds the stored values equal.

    Lists (arrays, JSON arrays) become tuples, dicts (JSON objects) sets of their items, and
    bytearray bytes; a bool is tagged, as JSON's ``true`` is not ``1``.
    """
    if isinstance(value, bool):
        return (bool, value)
    if isinstance(value, (list, tuple)):
        return tuple(_comparable(v) for v in value)
    if isinstance(value, dict):
        return frozenset((k, _comparable(v)) for k, v in value.items())
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


def _first_missing(keys: list[Any], width: int) -> tuple[int, int] | None:
    """Return (row, key column) of the first key holding None, or None when every key is whole.

    A key of several columns is a tuple (as :func:`_values` returns it for several names).
    """
    if width == 1:
        return (keys.index(None), 0) if None in keys else None
    for i, key in enumerate(keys):
        if None in key:
            return i, key.index(None)
    return None


def _has_duplicates(keys: list[Any]) -> bool:
    try:
        return len(set(keys)) != len(keys)
    except TypeError:
        return True  # unhashable: the full path names the row


def _apply(
    run: Callable[[], R],
    meta: TableMeta,
    label: str,
    group: _Group,
    offset: int,
) -> R:
    """Run a statement applying staged rows; on failure, name the row when it can be found."""
    try:
        return run()
    except DatabaseError as exc:
        _apply_failed(exc, meta, label, group, offset)


def _apply_failed(
    exc: DatabaseError, meta: TableMeta, label: str, group: _Group, offset: int
) -> NoReturn:
    """Raise the error for a statement applying *group*'s staged rows (instances)."""
    if exc.sqlstate == "21000":
        exc.message += (
            " (two rows of the batch have keys PostgreSQL finds equal though Python does "
            "not, such as a str and a UUID or NaN)"
        )
        exc.args = (exc.message,)
        raise exc
    _locate(exc, meta, label, group, offset, _find_row(exc, meta, group.rows))


# --- running a batch --------------------------------------------------------------------------


class _Operation(Generic[R_co]):
    """A batch operation as :func:`_run` drives it; the hooks do nothing unless overridden."""

    __slots__ = ()

    def begin(self, ex: Executor) -> None:
        """Prepare a transaction, before its first chunk."""

    def chunk(self, ex: Executor, offset: int, source: Iterator[Any], rows: list[Any]) -> R_co:
        """Do the work of one chunk: exhaust *source*, recording what it yields in *rows*."""
        raise NotImplementedError

    def prepare(
        self, ex: Executor, source: Iterator[Any], seen: set[str] | None = None
    ) -> Iterator[Any]:
        """Return a chunk's rows ready to send: partitions of a partitioned table made first.

        *seen* holds the partitions the transaction already made or found (see
        :func:`orso_pg._partitions.ensure`).
        """
        meta: TableMeta | None = getattr(self, "meta", None)
        if meta is None or meta.placement.partitioning is None:
            return source
        table = getattr(self, "table", None)
        return partitions.ready(ex, meta, table, source, self.columns, seen)

    def place(self, ex: Executor, items: Sequence[Any]) -> bool:
        """Make, at once, the partitions every row of *items* needs; return whether it did.

        A batch held in memory and written in one transaction looks at its partition
        column once (C loops over the whole input) and makes what is missing in one go,
        so its chunks then stream as a plain table's do.
        """
        meta: TableMeta | None = getattr(self, "meta", None)
        if meta is None or meta.placement.partitioning is None:
            return False
        table = getattr(self, "table", None)
        partitions.ensure_rows(ex, meta, table, items, self.columns)
        return True

    @property
    def columns(self) -> tuple[str, ...] | None:
        """The columns plain rows hold, in order; None when rows are instances."""
        return None

    def end(self, ex: Executor) -> None:
        """Finish a transaction, after its last chunk."""

    def kept(self) -> None:
        """The work done so far is committed (or its savepoint released)."""

    def undone(self) -> None:
        """The work not yet kept was rolled back."""


@attrs.frozen
class _Options:
    chunk_size: int
    chunked: bool
    start: int
    progress: ProgressOption
    timeout: float | None = None


def _options(label: str, given: BatchOptions, chunk_size: int = DEFAULT_CHUNK_SIZE) -> _Options:
    unknown = set(given) - set(BatchOptions.__annotations__)
    if unknown:
        msg = f"unknown batch option(s) {', '.join(sorted(unknown))}"
        raise ValidationError(msg, table=label, value=sorted(unknown))
    options = _Options(
        chunk_size=given.get("chunk_size", chunk_size),
        chunked=bool(given.get("chunked", False)),
        start=given.get("start", 0),
        progress=given.get("progress"),
        timeout=given.get("timeout"),
    )
    timeout = options.timeout
    if timeout is not None and (type(timeout) not in (int, float) or not timeout > 0):
        msg = f"timeout must be a positive number of seconds, not {timeout!r}"
        raise ValidationError(msg, table=label, value=timeout)
    if type(options.chunk_size) is not int or options.chunk_size < 1:
        msg = f"chunk_size must be a positive int, not {options.chunk_size!r}"
        raise ValidationError(msg, table=label, value=options.chunk_size)
    if type(options.start) is not int or options.start < 0:
        msg = f"start must be an int >= 0, not {options.start!r}"
        raise ValidationError(msg, table=label, value=options.start)
    return options


def _run(
    op: _Operation[R],
    session: Session,
    label: str,
    items: Iterable[Any],
    options: _Options,
) -> list[R]:
    """Feed *items* to *op* chunk by chunk, in one transaction or one per chunk.

    A chunk reaches the operation as an iterator it must exhaust, and a list in which it
    records the instances it read; a chunk is thus read while it is being sent.
    """
    total = len(items) - options.start if isinstance(items, Sized) else None
    iterator = iter(items)
    if options.start:
        next(itertools.islice(iterator, options.start, options.start), None)
    head = next(iterator, _END)
    if head is _END:
        return []
    report = reporter(options.progress, total if total is None else max(total, 0), label)
    size = options.chunk_size
    position = committed = options.start
    results: list[R] = []

    def chunks() -> Iterator[tuple[int, Iterator[Any], list[Any]]]:
        nonlocal head, position
        while head is not _END:
            rows: list[Any] = []
            yield position, itertools.chain((head,), itertools.islice(iterator, size - 1)), rows
            position += len(rows)
            head = next(iterator, _END)

    def one(ex: Executor, offset: int, source: Iterator[Any], rows: list[Any]) -> R:
        op.begin(ex)
        result = op.chunk(ex, offset, op.prepare(ex, source), rows)
        op.end(ex)
        return result

    def every(ex: Executor) -> list[R]:
        op.begin(ex)
        out = []
        # One transaction: the partitions made (or found) for a chunk stay there for the next.
        seen: set[str] = set()
        placed = isinstance(items, Sequence) and op.place(
            ex, items[options.start :] if options.start else items
        )
        for offset, source, rows in chunks():
            ready = source if placed else op.prepare(ex, source, seen)
            out.append(op.chunk(ex, offset, ready, rows))
            report.update(offset + len(rows) - options.start)
        op.end(ex)
        return out

    # A chunk read from an iterator is kept (to name a bad row) while new instances are being
    # made: each survives young collections and the cyclic GC keeps re-scanning them, which
    # costs more than building the rows. Reference counting still frees everything; the
    # collector runs again, if it was on, as soon as the batch ends.
    paused = gc.isenabled() and not isinstance(items, Sequence)
    try:
        if paused:
            gc.disable()
        if not options.chunked:
            results = session._atomic(every, timeout=options.timeout)
        else:
            for offset, source, rows in chunks():
                work = functools.partial(one, offset=offset, source=source, rows=rows)
                results.append(session._atomic(work, timeout=options.timeout))
                op.kept()
                committed = offset + len(rows)
                report.update(committed - options.start)
    except OrsoError as exc:
        op.undone()
        raise _mark(exc, committed=committed) from exc.__cause__
    except BaseException:
        op.undone()
        raise
    finally:
        if paused:
            gc.enable()
        report.close()
    op.kept()
    return results


# --- insert -----------------------------------------------------------------------------------


@attrs.define
class _Insert(_Operation[int]):
    meta: TableMeta
    table: str | None
    label: str
    keys: list[Any] | None
    assigned: list[object] = attrs.Factory(list)

    def chunk(self, ex: Executor, offset: int, source: Iterator[Any], rows: list[Any]) -> int:
        if self.keys is None:
            meta, table, label = self.meta, self.table, self.label
            loaded, _, deferred = _stream(ex, meta, table, label, source, rows, offset, stage=False)
            for group in _deferred_groups(meta, label, rows, deferred, offset):
                loaded += _copy(ex, meta, table, label, group, offset, stage=False)
            return loaded
        rows.extend(source)
        self._allocate(ex, offset, rows)
        loaded = 0
        for group in _groups(self.meta, self.label, rows, offset):
            loaded += _copy(ex, self.meta, self.table, self.label, group, offset, stage=False)
        self.keys.extend(ops.key_value(self.meta, obj) for obj in rows)
        return loaded

    def _allocate(self, ex: Executor, offset: int, rows: list[Any]) -> None:
        """Draw keys for the rows without one and set them, so COPY sends every key."""
        if self.meta.composite:
            return  # natural parts only (insert() refused generated ones): nothing to draw
        key = compiler.require_key(self.meta)
        if not key.generated:
            return  # a natural key: a row without one is refused like any missing value
        name = key.name
        current = _values(self.meta, self.label, rows, offset, (name,))
        missing = [obj for obj, key in zip(rows, current, strict=True) if key is None]
        if not missing:
            return
        stmt = batch_sql.allocate_keys(self.meta, self.table, len(missing))
        fresh = ex.fetch_all(stmt, table=self.label)
        setter = object.__setattr__
        # The server gives keys as its type (a UUID for a str key declared sql_type="uuid"):
        # they go through the column's loader, as a read of the row would.
        load = key.type.load
        for obj, (value,) in zip(missing, fresh, strict=True):
            setter(obj, name, value if load is None else load(value))
        self.assigned.extend(missing)

    def kept(self) -> None:
        self.assigned.clear()

    def undone(self) -> None:
        # Keys drawn for rows that were rolled back belong to no row: take them back.
        for obj in self.assigned:
            object.__setattr__(obj, compiler.require_key(self.meta).name, None)
        self.assigned.clear()


def insert(
    cls: type[M],
    models: Iterable[M],
    db: object,
    table_name: object = None,
    *,
    returning: Literal["keys"] | None = None,
    **options: Unpack[BatchOptions],
) -> Any:
    """Insert every instance of *models* with ``COPY ... FROM STDIN (FORMAT BINARY)``.

    Server-filled columns (generated keys, ``created_at``/``updated_at``, server defaults) that
    a row leaves None get the server's value; a row that holds a value keeps it (rows are then
    sent in groups of the same columns, so a batch mixing supplied and generated keys works; an
    identity sequence is not moved past keys supplied by hand, as in PostgreSQL).

    Args:
        cls: The model class.
        models: Any iterable of instances, a generator included; it is read one chunk at a
            time, so memory stays flat whatever its length.
        db: A ``Database`` or a ``Transaction``.
        table_name: Insert into this table instead of the model's.
        returning: ``"keys"`` to return the primary key of every row, in input order. Keys the
            server generates are drawn first (one statement per chunk, from the column's own
            sequence or default) and set on the instances, so COPY stays the fast path.
        **options: :class:`BatchOptions` (``chunk_size``, ``chunked``, ``start``,
            ``progress``).

    Returns:
        The number of rows inserted, or with ``returning="keys"`` the list of keys.

    Raises:
        ValidationError: A row holds a value its column cannot store; nothing was written (in
            chunked mode, nothing of that chunk). The error names the row's position, the
            column and the value.
        ConstraintError: PostgreSQL refused a row (a duplicate key, a foreign key...); the same
            rules apply.
    """
    meta, table, label, session = ops.setup(cls, db, table_name)
    asked: object = returning  # checked at run time too: callers may not be type-checked
    if asked is not None and asked != "keys":
        msg = f"returning must be None or 'keys', not {returning!r}"
        raise ValidationError(msg, table=label, value=returning)
    if returning is not None:
        generated = [c.name for c in compiler.require_keys(meta) if c.generated]
        if meta.composite and generated:
            msg = (
                f"{meta.cls.__name__}: returning='keys' needs every part of the composite key "
                f"({', '.join(meta.key_names)}) supplied; {', '.join(generated)} is generated "
                "by the server"
            )
            raise QueryError(msg, table=label)
    op = _Insert(meta, table, label, [] if returning else None)
    counts = _run(op, session, label, models, _options(label, options))
    if op.keys is not None:
        return op.keys
    return sum(counts)


def _copy_plain(
    ex: Executor,
    meta: TableMeta,
    table: str | None,
    label: str,
    names: tuple[str, ...],
    source: Iterator[Any],
    rows: list[Any],
    offset: int,
    *,
    stage: bool,
    wire: batch_columnar.Wire | None = None,
) -> tuple[int, bool]:
    """COPY plain rows (tuples or mappings) of *names*, recording each in *rows*.

    Returns the rows loaded and whether they are mappings (the first row decides). *wire*
    says how the rows of a columnar input travel.
    """
    first = next(source)
    mapping = isinstance(first, Mapping)
    shape = batch_rows.shape(meta, names)
    feed = batch_rows.row_feeder(meta, names, mapping=mapping)
    query = batch_sql.copy(meta, table, names, binary=shape.binary, stage=stage)
    types = shape.types if wire is None or wire.types is None else wire.types
    try:
        stream = feed(itertools.chain((first,), source), rows)
        return ex.copy_rows(query, types, stream, table=label), mapping
    except CopyRowError as exc:
        i = len(rows) - 1
        _mixed(label, rows[i], offset + i, mapping=mapping)
        _unsent(
            meta,
            label,
            names,
            _instance(meta, label, names, _given(wire, rows[i]), offset + i),
            offset + i,
            exc.__cause__,
        )
    except DatabaseError as exc:
        given = rows if wire is None else list(map(wire.restore, rows))
        _copy_failed(
            exc,
            meta,
            label,
            _Group(names, _instances(meta, label, names, given, offset), None),
            offset,
        )


def _given(wire: batch_columnar.Wire | None, row: Any) -> Any:
    return row if wire is None else wire.restore(row)


def _mixed(label: str, row: object, position: int, *, mapping: bool) -> None:
    """Refuse a plain row of the other kind than the batch's first (a tuple among mappings)."""
    if isinstance(row, Mapping) == mapping and not isinstance(row, (str, bytes, bytearray)):
        return
    first = "mappings" if mapping else "tuples or lists"
    msg = (
        f"{label}: the row is a {type(row).__name__} {describe_value(row)} but the batch's "
        f"first row made it a batch of {first}; give every row the same way"
    )
    raise _mark(ValidationError(msg, table=label, value=row), position=position)


def _instance(
    meta: TableMeta, label: str, names: tuple[str, ...], row: object, position: int
) -> object:
    """Return an instance holding a plain row's values, to name what is wrong with it."""
    obj = batch_rows.as_instance(meta, names, row)
    if isinstance(obj, str):
        err = ValidationError(f"{label}: {obj}", table=label, value=row)
        raise _mark(err, position=position)
    return obj


def _instances(
    meta: TableMeta, label: str, names: tuple[str, ...], rows: list[Any], offset: int
) -> list[object]:
    return [_instance(meta, label, names, r, offset + i) for i, r in enumerate(rows)]


def _plain_columns(
    meta: TableMeta, label: str, columns: Sequence[str] | None, default: tuple[str, ...]
) -> tuple[str, ...]:
    """Return the columns plain rows hold: *columns* checked against the model, or *default*."""
    if columns is None:
        return default
    if isinstance(columns, str):
        msg = f"columns must be a sequence of column names, not the str {columns!r}"
        raise QueryError(msg, table=label, value=columns)
    names = tuple(meta.column(name).name for name in columns)
    if len(set(names)) != len(names):
        msg = f"columns {list(names)} name a column twice"
        raise QueryError(msg, table=label, value=list(names))
    return names


@attrs.frozen
class _InsertRows(_Operation[int]):
    meta: TableMeta
    table: str | None
    label: str
    names: tuple[str, ...]
    wire: batch_columnar.Wire | None = None

    @property
    def columns(self) -> tuple[str, ...] | None:
        """The columns the plain rows hold."""
        return self.names

    def chunk(self, ex: Executor, offset: int, source: Iterator[Any], rows: list[Any]) -> int:
        meta, table, label, names = self.meta, self.table, self.label, self.names
        loaded, _ = _copy_plain(
            ex, meta, table, label, names, source, rows, offset, stage=False, wire=self.wire
        )
        return loaded


def insert_rows(
    cls: type,
    rows: Iterable[Sequence[Any] | Mapping[str, Any]],
    db: object,
    table_name: object = None,
    *,
    columns: Sequence[str] | None = None,
    **options: Unpack[BatchOptions],
) -> int:
    """Insert plain rows (tuples or dicts) with ``COPY ... FROM STDIN``, building no instances.

    The fast path for loading data that does not come as model instances (a CSV reader, numpy
    columns, another database): each row is checked as an instance's values would be, streamed
    in chunks, all in one transaction, and a bad row fails the batch naming its position, the
    column and the value.

    Args:
        cls: The model whose table receives the rows.
        rows: Any iterable of tuples or lists holding the values of *columns* in order, or of
            mappings from column name to value; or columnar input (a pandas ``DataFrame``, a
            pyarrow ``Table`` or ``RecordBatch``, a dict of numpy arrays, Series or lists),
            whose columns are matched to the model by name and checked once per column
            (:mod:`orso_pg.batch._columnar`).
        db: A ``Database`` or a ``Transaction``.
        table_name: Insert into this table instead of the model's.
        columns: The columns the rows hold; by default every column the server does not fill
            (generated keys, ``created_at``/``updated_at`` and server defaults get the
            server's value). With columnar input, the input's columns to write (default:
            all of them).
        **options: :class:`BatchOptions`.

    Returns:
        The number of rows inserted.
    """
    meta, table, label, session = ops.setup(cls, db, table_name)
    if batch_columnar.is_columnar(rows):
        data = batch_columnar.prepare(meta, label, rows, columns)
        op = _InsertRows(meta, table, label, data.names, data.wire)
        return sum(_run(op, session, label, data, _options(label, options)))
    default = tuple(c.name for c in meta.columns if not c.generated)
    op = _InsertRows(meta, table, label, _plain_columns(meta, label, columns, default))
    return sum(_run(op, session, label, rows, _options(label, options)))


# --- upsert -----------------------------------------------------------------------------------


@attrs.define
class _Staged(_Operation[R_co]):
    """What staged operations share: the temporary table's life cycle."""

    meta: TableMeta
    table: str | None
    label: str
    dirty: bool = False

    def begin(self, ex: Executor) -> None:
        ex.execute(batch_sql.create_stage(self.meta, self.table), table=self.label)
        self.dirty = False

    def end(self, ex: Executor) -> None:
        ex.execute(batch_sql.drop_stage(), table=self.label)

    def ready(self, ex: Executor) -> None:
        """Empty the staging table if a chunk left rows in it."""
        if self.dirty:
            ex.execute(batch_sql.truncate_stage(), table=self.label)
        self.dirty = True

    def stage(self, ex: Executor, group: _Group, offset: int) -> None:
        self.ready(ex)
        _copy(ex, self.meta, self.table, self.label, group, offset, stage=True)

    def stream(
        self,
        ex: Executor,
        source: Iterator[Any],
        rows: list[Any],
        offset: int,
        only: frozenset[str] | None = None,
    ) -> tuple[_Group, list[_Group]]:
        """Stage the chunk as it is read; return the group sent and the groups still to send."""
        self.ready(ex)
        meta, label = self.meta, self.label
        _, sent, deferred = _stream(
            ex, meta, self.table, label, source, rows, offset, stage=True, only=only
        )
        return sent, _deferred_groups(meta, label, rows, deferred, offset, only)


@attrs.define
class _Upsert(_Staged[UpsertResult]):
    conflict: tuple[str, ...] = ()
    update: tuple[str, ...] | None = None
    do_nothing: bool = False
    assign: Assignments | None = None

    def statement(self, names: tuple[str, ...]) -> compiler.Statement:
        """Return the staged upsert of the columns *names*."""
        if self.assign is not None:
            return batch_sql.upsert_assigning(
                self.meta, self.table, names, self.conflict, self.assign[0], self.assign[1]
            )
        return batch_sql.upsert_from_stage(
            self.meta,
            self.table,
            names,
            self.conflict,
            update=self.update,
            do_nothing=self.do_nothing,
        )

    def chunk(
        self, ex: Executor, offset: int, source: Iterator[Any], rows: list[Any]
    ) -> UpsertResult:
        sent, rest = self.stream(ex, source, rows, offset)
        meta, label = self.meta, self.label
        if not self.do_nothing and _has_duplicates(
            _values(meta, label, rows, offset, self.conflict)
        ):
            return self.staged(ex, offset, rows)  # dedupe first: the stage is refilled
        inserted, updated = self.apply(ex, sent, offset)
        for group in rest:
            self.stage(ex, group, offset)
            more = self.apply(ex, group, offset)
            inserted, updated = inserted + more[0], updated + more[1]
        return UpsertResult(inserted, updated, len(rows) - inserted - updated)

    def apply(self, ex: Executor, group: _Group, offset: int) -> tuple[int, int]:
        stmt = self.statement(group.names)
        run = functools.partial(ex.fetch_one, stmt, table=self.label)
        row = _apply(run, self.meta, self.label, group, offset)
        assert row is not None  # noqa: S101 - an aggregate always returns a row
        return row[0], row[1]

    def staged(self, ex: Executor, offset: int, rows: list[Any]) -> UpsertResult:
        """Upsert a whole chunk held in memory, the last row of each key only."""
        members: Sequence[object] = rows
        index: Sequence[int] | None = None
        if not self.do_nothing:
            members, index = _last_wins(self.meta, self.label, rows, offset, self.conflict)
        inserted = updated = 0
        for part in _groups(self.meta, self.label, members, offset):
            group = _Group(part.names, part.rows, _compose(index, part.index))
            self.stage(ex, group, offset)
            more = self.apply(ex, group, offset)
            inserted, updated = inserted + more[0], updated + more[1]
        return UpsertResult(inserted, updated, len(rows) - inserted - updated)


def _columns(meta: TableMeta, names: Iterable[str] | None, what: str) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str):
        msg = f"{what} must be a sequence of column names, not the str {names!r}"
        raise QueryError(msg, table=meta.name, value=names)
    return tuple(meta.column(n).name for n in names)


def _conflict_key(meta: TableMeta, key: Sequence[str] | None) -> tuple[str, ...]:
    if key is None:
        return ops.upsert_key(meta)
    chosen = _columns(meta, key, "key")
    assert chosen is not None  # noqa: S101 - key is not None
    if chosen in meta.unique_keys or (meta.key and chosen == meta.key_names):
        return chosen
    keys = ", ".join("(" + ", ".join(k) + ")" for k in meta.unique_keys) or "none"
    msg = (
        f"{meta.cls.__name__}: key {chosen} is not the primary key nor a declared unique key "
        f"(declared: {keys}); ON CONFLICT needs a unique constraint on exactly those columns"
    )
    raise QueryError(msg, table=meta.name, value=key)


def _upsert_options(
    meta: TableMeta,
    label: str,
    key: Sequence[str] | None,
    update_columns: UpdateColumns | None,
    on_conflict: object,
) -> tuple[tuple[str, ...], tuple[str, ...] | None, bool, Assignments | None]:
    """Check an upsert's options.

    Returns:
        The conflict key, the columns to update, DO NOTHING, and the compiled assignments when
        *update_columns* maps columns to expressions.
    """
    if on_conflict not in ("update", "nothing"):
        msg = f"on_conflict must be 'update' or 'nothing', not {on_conflict!r}"
        raise ValidationError(msg, table=label, value=on_conflict)
    conflict = _conflict_key(meta, key)
    if isinstance(update_columns, Mapping):
        if on_conflict == "nothing":
            msg = "update_columns assigns values on conflict; on_conflict='nothing' assigns none"
            raise QueryError(msg, table=label, value=update_columns)
        return conflict, None, False, upsert_assignments(meta, label, update_columns)
    update = _columns(meta, update_columns, "update_columns")
    return conflict, update, on_conflict == "nothing", None


def upsert(
    cls: type[M],
    models: Iterable[M],
    db: object,
    table_name: object = None,
    *,
    key: Sequence[str] | None = None,
    update_columns: UpdateColumns | None = None,
    on_conflict: Literal["update", "nothing"] = "update",
    **options: Unpack[BatchOptions],
) -> UpsertResult:
    """Insert every instance, or update the row that holds the same key.

    Each chunk is copied into a temporary table, then applied by one ``INSERT ... SELECT ...
    ON CONFLICT (key) DO UPDATE``. The key is the model's declared unique key (as for
    ``upsert``), or *key* when given (the primary key or a declared unique key); anything else
    is a :class:`QueryError` before a statement runs. When several rows of the batch share a
    key, the last one wins (with ``on_conflict="nothing"``, the first one, and none if the key
    exists). The primary key and ``created_at`` of an existing row are kept; ``updated_at`` is
    set to ``now()``. A rerun of the same batch gives the same table, so a chunked upsert that
    failed can simply be run again.

    Args:
        cls: The model class.
        models: Any iterable of instances.
        db: A ``Database`` or a ``Transaction``.
        table_name: Upsert into this table instead of the model's.
        key: The conflict key, when not the model's declared one.
        update_columns: Overwrite only these columns of existing rows (default: every column
            outside the key, the primary key and the timestamps), or a mapping from column to
            expression: ``{"qty": col("qty") + Expr.excluded("qty")}`` adds the new volume to
            the stored one (``Expr.excluded`` is the value the batch brings).
        on_conflict: ``"update"``, or ``"nothing"`` to leave existing rows alone.
        **options: :class:`BatchOptions`.

    Returns:
        The counts of inserted, updated and skipped rows.
    """
    meta, table, label, session = ops.setup(cls, db, table_name)
    conflict, update, do_nothing, assign = _upsert_options(
        meta, label, key, update_columns, on_conflict
    )
    op = _Upsert(
        meta, table, label, conflict=conflict, update=update, do_nothing=do_nothing, assign=assign
    )
    counts = _run(op, session, label, models, _options(label, options))
    return sum(counts, UpsertResult())


@attrs.define
class _UpsertRows(_Upsert):
    names: tuple[str, ...] = ()
    wire: batch_columnar.Wire | None = None

    @property
    def columns(self) -> tuple[str, ...] | None:
        """The columns the plain rows hold."""
        return self.names

    def chunk(
        self, ex: Executor, offset: int, source: Iterator[Any], rows: list[Any]
    ) -> UpsertResult:
        meta, table, label, names = self.meta, self.table, self.label, self.names
        self.ready(ex)
        wire = self.wire
        _, mapping = _copy_plain(
            ex, meta, table, label, names, source, rows, offset, stage=True, wire=wire
        )
        staged: list[Any] = rows
        kept: list[int] | None = None
        if not self.do_nothing:
            where = self.conflict if mapping else tuple(names.index(c) for c in self.conflict)
            kept = _last_of_each(list(map(operator.itemgetter(*where), rows)), len(where))
            if kept is not None:
                # Rare: keep the last row of each key, as for instances, and stage those again.
                staged = [rows[i] for i in kept]
                self.ready(ex)
                _copy_plain(
                    ex, meta, table, label, names, iter(staged), [], 0, stage=True, wire=wire
                )
        stmt = self.statement(names)
        try:
            row = ex.fetch_one(stmt, table=label)
        except DatabaseError as exc:
            given = staged if wire is None else list(map(wire.restore, staged))
            group = _Group(names, _instances(meta, label, names, given, offset), kept)
            _apply_failed(exc, meta, label, group, offset)
        assert row is not None  # noqa: S101 - an aggregate always returns a row
        return UpsertResult(row[0], row[1], len(rows) - row[0] - row[1])


def upsert_rows(
    cls: type,
    rows: Iterable[Sequence[Any] | Mapping[str, Any]],
    db: object,
    table_name: object = None,
    *,
    columns: Sequence[str] | None = None,
    key: Sequence[str] | None = None,
    update_columns: UpdateColumns | None = None,
    on_conflict: Literal["update", "nothing"] = "update",
    **options: Unpack[BatchOptions],
) -> UpsertResult:
    """Upsert plain rows (tuples or dicts) as :func:`upsert` does instances, building none.

    Rows are checked as an instance's values would be and staged with COPY; the same key
    twice keeps the last row. Only the columns the rows hold are written: on conflict, those
    outside the key (or *update_columns*) are overwritten and the others keep their values; a
    new row gets the defaults of the columns it does not hold.

    Args:
        cls: The model whose table receives the rows.
        rows: Any iterable of tuples or lists holding the values of *columns* in order, or of
            mappings from column name to value; or columnar input, as for :func:`insert_rows`.
        db: A ``Database`` or a ``Transaction``.
        table_name: Upsert into this table instead of the model's.
        columns: The columns the rows hold; they must include the key and every NOT NULL
            column the server does not fill. By default the key and every column the server
            does not fill, in declaration order.
        key: The conflict key, when not the model's declared one.
        update_columns: Overwrite only these columns of existing rows, or a mapping from
            column to expression (see :func:`upsert`).
        on_conflict: ``"update"``, or ``"nothing"`` to leave existing rows alone.
        **options: :class:`BatchOptions`.

    Returns:
        The counts of inserted, updated and skipped rows.
    """
    meta, table, label, session = ops.setup(cls, db, table_name)
    conflict, update, do_nothing, assign = _upsert_options(
        meta, label, key, update_columns, on_conflict
    )
    data = None
    if batch_columnar.is_columnar(rows):
        data = batch_columnar.prepare(meta, label, rows, columns)
        names = data.names
    else:
        default = tuple(c.name for c in meta.columns if not c.generated or c.name in conflict)
        names = _plain_columns(meta, label, columns, default)
    missing = [c for c in conflict if c not in names]
    if missing:
        msg = f"columns {list(names)} leave out the conflict key column(s) {missing}"
        raise QueryError(msg, table=label, value=list(names))
    # PostgreSQL checks NOT NULL on the row to insert before it looks for a conflict, so a
    # column the rows leave out must be nullable or filled by the server, even for updates.
    required = [c.name for c in meta.columns if c.not_null and not c.generated]
    unfilled = [c for c in required if c not in names]
    if unfilled:
        msg = (
            f"columns {list(names)} leave out the NOT NULL column(s) {unfilled}, which an "
            "upsert must hold: PostgreSQL checks the row to insert before finding the conflict"
        )
        raise QueryError(msg, table=label, value=list(names))
    absent = [c for c in update or () if c not in names]
    if absent:
        msg = f"update_columns {absent} are not among the columns the rows hold {list(names)}"
        raise QueryError(msg, table=label, value=list(absent))
    op = _UpsertRows(
        meta,
        table,
        label,
        conflict=conflict,
        update=update,
        do_nothing=do_nothing,
        assign=assign,
        names=names,
        wire=None if data is None else data.wire,
    )
    counts = _run(op, session, label, rows if data is None else data, _options(label, options))
    return sum(counts, UpsertResult())


# --- update -----------------------------------------------------------------------------------


@attrs.define
class _Update(_Staged[int]):
    wanted: frozenset[str] | None = None
    assign: Assignments | None = None

    def chunk(self, ex: Executor, offset: int, source: Iterator[Any], rows: list[Any]) -> int:
        sent, rest = self.stream(ex, source, rows, offset, self.wanted)
        names = self.meta.key_names
        keys = _values(self.meta, self.label, rows, offset, names)
        if _first_missing(keys, len(names)) is not None or _has_duplicates(keys):
            return self.staged(ex, offset, rows, keys)
        updated = self.apply(ex, sent, offset)
        for group in rest:
            self.stage(ex, group, offset)
            updated += self.apply(ex, group, offset)
        return updated

    def apply(self, ex: Executor, group: _Group, offset: int) -> int:
        if self.assign is not None:
            stmt = batch_sql.update_assigning(self.meta, self.table, *self.assign)
        else:
            stmt = batch_sql.update_from_stage(self.meta, self.table, group.names)
        run = functools.partial(ex.execute, stmt, table=self.label)
        return _apply(run, self.meta, self.label, group, offset)

    def staged(self, ex: Executor, offset: int, rows: list[Any], keys: list[Any]) -> int:
        """Update from a whole chunk held in memory, the last row of each key only."""
        names = self.meta.key_names
        missing = _first_missing(keys, len(names))
        if missing is not None:
            i, pk = missing[0], names[missing[1]]
            msg = f"{self.label}.{pk} is None: a row without a primary key cannot be updated"
            err = ValidationError(msg, table=self.label, column=pk, value=None)
            raise _mark(err, position=offset + i)
        members, index = _last_wins(self.meta, self.label, rows, offset, names)
        updated = 0
        for part in _groups(self.meta, self.label, members, offset, self.wanted):
            group = _Group(part.names, part.rows, _compose(index, part.index))
            self.stage(ex, group, offset)
            updated += self.apply(ex, group, offset)
        return updated


def update(
    cls: type[M],
    models: Iterable[M],
    db: object,
    table_name: object = None,
    *,
    columns: Sequence[str] | Mapping[str, object] | None = None,
    **options: Unpack[BatchOptions],
) -> int:
    """Write every instance to the row with its primary key; return the rows updated.

    Each chunk is copied into a temporary table and applied by one ``UPDATE ... FROM``. Rows
    whose key is not in the table are skipped (the count tells); when a key appears twice, the
    last row wins. ``created_at`` is kept and ``updated_at`` set to ``now()``, as ``update``
    does; a server-filled column a row leaves None keeps its stored value.

    Args:
        cls: The model class.
        models: Any iterable of instances, each with its primary key.
        db: A ``Database`` or a ``Transaction``.
        table_name: Update this table instead of the model's.
        columns: Write only these columns (default: all but the key and the timestamps), or
            a mapping from column to expression, where ``col(name)`` is the stored value and
            ``Expr.excluded(name)`` the instance's: ``{"qty": col("qty") + Expr.excluded("qty")}``.
        **options: :class:`BatchOptions`.
    """
    meta, table, label, session = ops.setup(cls, db, table_name)
    if isinstance(columns, Mapping):
        # Expressions are matched on a single-column key (a composite key is refused here).
        pk = compiler.require_key(meta).name
        assign = update_assignments(meta, label, columns)
        read = set().union(*map(incoming_names, columns.values()))
        op = _Update(meta, table, label, wanted=frozenset((pk, *read)), assign=assign)
        return sum(_run(op, session, label, models, _options(label, options)))
    key = compiler.require_keys(meta)
    chosen = _columns(meta, columns, "columns")
    if chosen is None:
        # The timestamps are never written from the rows: leave them out of the stage.
        stamps = {c.name for c in (meta.created_at, meta.updated_at) if c is not None}
        chosen = tuple(n for n in meta.column_names if n not in stamps)
    wanted = frozenset((*(c.name for c in key), *chosen))
    op = _Update(meta, table, label, wanted=wanted)
    counts = _run(op, session, label, models, _options(label, options))
    return sum(counts)


# --- delete -----------------------------------------------------------------------------------


@attrs.define
class _Delete(_Operation[int]):
    meta: TableMeta
    table: str | None
    label: str
    cascade: bool

    def prepare(
        self, ex: Executor, source: Iterator[Any], seen: set[str] | None = None
    ) -> Iterator[Any]:
        """Keys to delete need no partition."""
        del ex, seen
        return source

    def place(self, ex: Executor, items: Sequence[Any]) -> bool:  # noqa: ARG002
        """Keys to delete need no partition."""
        return True

    def chunk(self, ex: Executor, offset: int, source: Iterator[Any], rows: list[Any]) -> int:
        rows.extend(source)
        try:
            keys = ops.dump_keys(self.meta, self.table, rows)
        except ValidationError as exc:
            position, exc.position = exc.position, None
            raise _mark(exc, position=offset + (position or 0)) from None
        if self.cascade:
            target = self.meta.qualified(self.table)
            where = batch_sql.key_condition(self.meta, keys)
            return ops.cascade_delete(ex, target, where, self.label)
        return ex.execute(batch_sql.delete_any(self.meta, self.table, keys), table=self.label)


def delete(
    cls: type,
    ids: Iterable[object],
    db: object,
    table_name: object = None,
    *,
    cascade: bool = False,
    **options: Unpack[BatchOptions],
) -> int:
    """Delete the rows whose primary keys are *ids*; return how many were deleted.

    All keys go in one ``DELETE ... WHERE pk = ANY(%s)`` (one array parameter, whatever the
    count); with ``chunked=True``, one statement and one commit per ``chunk_size`` keys (50,000
    unless given). With *cascade*,
    rows referencing the deleted ones are deleted first, recursively, following the live
    foreign keys as ``delete_cascade`` does.
    """
    meta, table, label, session = ops.setup(cls, db, table_name)
    compiler.require_keys(meta)
    whole = not options.get("chunked") and "chunk_size" not in options
    chosen = _options(label, options, sys.maxsize if whole else DEFAULT_CHUNK_SIZE)
    op = _Delete(meta, table, label, cascade)
    return sum(_run(op, session, label, ids, chosen))
