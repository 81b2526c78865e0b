"""Pipeline sessions: Orso operations sent without waiting, their results delivered later.

Owns :class:`Pipeline` (the session ``Database.pipeline()`` yields), :class:`Pending` (the
handle an operation returns in a pipeline) and :class:`Step` (an operation cut in two: the
statement to send, and what turns its result into the operation's return value). It decides
when statements are sent, when the pipeline syncs, which errors land on which handle and when
a transaction commits; it must not build SQL nor touch the connection itself (the
:class:`~orso_pg._executor.PipelineExecutor` does).

Two modes:

* autocommit (the default): each operation commits on its own. Each ends the server's
  implicit transaction right after it (a Sync message, not waited for), so a failing operation
  fails its own handle only and the operations after it run, in order.
* transaction (``transaction=True``): every operation runs in one transaction, committed when
  the block ends. The first operation that fails (on the server, or when its result is read,
  e.g. an ``update`` finding no row) fails every later one with
  :class:`~orso_pg.errors.PipelineAbortedError`, and the transaction is rolled back.
* savepoint (``tx.pipeline()`` in an open :class:`~orso_pg.Transaction`): as a transaction
  pipeline, but inside a savepoint of the enclosing transaction. A failure rolls back to the
  savepoint, so only the pipeline's own work is undone and the enclosing transaction goes on.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from typing import Any, Final, Generic, TypeVar

from psycopg import sql

from orso_pg._compiler import Statement
from orso_pg._executor import ROWCOUNT, Aborted, Executor, PipelineExecutor
from orso_pg.errors import (
    ConfigError,
    ConnectionLostError,
    OrsoError,
    PipelineAbortedError,
    QueryError,
)
from orso_pg.session._database import Session

__all__ = ["Pending", "Pipeline", "Step", "pipelined"]

T = TypeVar("T")

_QUEUED: Final = 0
_DONE: Final = 1
_FAILED: Final = 2

_BEGIN: Final = Statement(sql.SQL("BEGIN"))
_COMMIT: Final = Statement(sql.SQL("COMMIT"))
_ROLLBACK: Final = Statement(sql.SQL("ROLLBACK"))

#: Numbers the savepoints of pipelines opened in a transaction (unique in the process).
_savepoints = itertools.count(1)

#: Bytes counted for a parameter whose size is not measured (numbers, dates...).
_SMALL: Final = 16


class Step(Generic[T]):
    """One operation, ready to run: its statement and how its result becomes the return value.

    Attributes:
        session: Where it runs.
        stmt: The one statement it sends.
        kind: What the statement's result is read as (``ONE``, ``ALL``, ``ROWCOUNT``,
            ``SCALAR`` from :mod:`orso_pg._executor`).
        label: The table name for messages.
        finish: Turns the result into the operation's value; may raise an ``OrsoError``.
        write: Whether the statement may write (writes are never retried).
        lock: The row lock of a read, if any.
    """

    __slots__ = ("finish", "kind", "label", "lock", "session", "stmt", "write")

    def __init__(
        self,
        session: Session,
        stmt: Statement,
        kind: int,
        label: str,
        finish: Callable[[Any], T],
        *,
        write: bool = False,
        lock: object = None,
    ) -> None:
        self.session = session
        self.stmt = stmt
        self.kind = kind
        self.label = label
        self.finish = finish
        self.write = write
        self.lock = lock


class Pending(Generic[T]):
    """The result of an operation queued in a pipeline, known once the pipeline syncs.

    ``Trade.find_by_id(5, p)`` in a pipeline returns a ``Pending[Trade | None]``; its
    :meth:`result` is what ``Trade.find_by_id(5, db)`` would have returned, or raises what it
    would have raised.

    Attributes:
        operation: The 1-based number of the operation in its pipeline.
    """

    __module__ = "orso_pg"
    __slots__ = ("_error", "_observed", "_pipeline", "_state", "_value", "operation")

    def __init__(self, pipeline: Pipeline, operation: int) -> None:
        self._pipeline = pipeline
        self.operation = operation
        self._state = _QUEUED
        self._value: Any = None
        self._error: BaseException | None = None
        self._observed = False

    def result(self) -> T:
        """Return the operation's value, syncing the pipeline first if it has not yet.

        Raises:
            OrsoError: what the operation raised; :class:`PipelineAbortedError` for an
                operation of a transaction that an earlier failure aborted.
        """
        if self._state == _QUEUED:
            self._pipeline.sync()
            if self._state == _QUEUED:  # pragma: no cover - a sync resolves every handle
                msg = f"operation {self.operation} of the pipeline has no result"
                raise QueryError(msg)
        if self._error is not None:
            self._observed = True
            raise self._error
        return self._value  # type: ignore[no-any-return]

    def done(self) -> bool:
        """Whether the result (or the error) has arrived."""
        return self._state != _QUEUED

    def failed(self) -> bool:
        """Whether the operation failed (``result()`` would raise)."""
        return self._state == _FAILED

    def _fail(self, error: BaseException) -> None:
        self._state = _FAILED
        self._error = error

    def __repr__(self) -> str:
        state = ("queued", "done", "failed")[self._state]
        return f"<Pending operation {self.operation} {state}>"


class Pipeline(Session):
    """A session that sends operations without waiting for each other's results.

    Obtained from :meth:`Database.pipeline`; not thread-safe. The operations that run here
    (``insert``, ``update``, ``upsert``, ``insert_or_update``, ``delete``, ``find_by_id``,
    ``find_one``, ``find_first_filter``, ``find_latest*``, ``find_where``, ``find_by_field``,
    ``find_first_by_field``, ``find_by_field_in``, ``find_all``, ``count``, ``count_where``,
    ``exists``, ``exists_filter``, ``update_where``, ``delete_where``, ``aggregate`` and their
    ``_with_table`` twins) return a :class:`Pending`; the others raise :class:`QueryError`.
    Checks made before anything is sent (a bad value, an unknown column) raise at the call,
    as with a ``Database``. The pipeline syncs by itself every ``max_pending`` operations or
    ``max_bytes`` of parameters, so memory stays flat however many operations are sent.
    """

    __module__ = "orso_pg"

    def __init__(
        self,
        px: PipelineExecutor,
        *,
        transaction: bool,
        max_pending: int,
        max_bytes: int,
        side: Callable[[Callable[[Executor], Any]], Any],
        savepoint: sql.Composable | None = None,
    ) -> None:
        self._px = px
        self._side = side
        self._savepoint = savepoint
        self.transaction = transaction
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self._queue: list[tuple[Pending[Any], Any, int, str, Callable[[Any], Any]]] = []
        self._bytes = 0
        self._count = 0
        self._first_error: Pending[Any] | None = None  # transaction mode: what aborted it
        self._failures: list[Pending[Any]] = []  # failed handles not yet looked at
        self._closed = False

    def __repr__(self) -> str:
        mode = "transaction" if self.transaction else "autocommit"
        if self._savepoint is not None:
            mode = "savepoint"
        return f"<Pipeline {mode}, {len(self._queue)} queued, {self._count} operations>"

    @property
    def operations(self) -> int:
        """How many operations were queued so far."""
        return self._count

    # --- queueing -----------------------------------------------------------------------------

    def _queue_step(self, step: Step[T]) -> Pending[T]:
        return self._enqueue(step.stmt, step.kind, step.label, step.finish)

    def _enqueue(
        self, stmt: Statement, kind: int, label: str, finish: Callable[[Any], T]
    ) -> Pending[T]:
        """Queue one statement; *finish* turns its result into the handle's value.

        Every operation of a pipeline passes here: the checks are grouped, the sending
        inlined, so that the common case costs as few calls as possible.
        """
        px = self._px
        if self._closed or px.broken is not None or stmt.settings or self._first_error:
            return self._refused(stmt, label)
        self._count += 1
        handle: Pending[T] = Pending(self, self._count)
        cur = px.send(stmt, binary=kind != ROWCOUNT)
        if not self.transaction:
            px.boundary()
        queue = self._queue
        queue.append((handle, cur, kind, label, finish))
        size = 64
        for value in stmt.params:
            size += len(value) if type(value) is str or type(value) is bytes else _SMALL
        self._bytes += size
        if len(queue) >= self.max_pending or self._bytes >= self.max_bytes:
            self.sync()
        return handle

    def _refused(self, stmt: Statement, label: str) -> Pending[Any]:
        """Raise why *stmt* cannot be queued, or return its handle failed as aborted."""
        if self._closed:
            msg = "this pipeline is closed; open another with db.pipeline()"
            raise QueryError(msg, table=label)
        if self._px.broken is not None:
            raise self._px.broken
        if stmt.settings:  # pragma: no cover - no pipelined operation has settings
            msg = "a vector search with search settings cannot run in a pipeline"
            raise QueryError(msg, table=label)
        self._count += 1
        handle: Pending[Any] = Pending(self, self._count)
        handle._fail(self._aborted(label))
        return handle

    def _aborted(self, label: str | None) -> PipelineAbortedError:
        first = self._first_error
        assert first is not None  # noqa: S101 - only called once an operation failed
        undone = "its transaction is" if self._savepoint is None else "its savepoint is"
        msg = (
            f"aborted by an earlier error at operation {first.operation} of this pipeline "
            f"({undone} rolled back): {first._error}"
        )
        return PipelineAbortedError(msg, operation=first.operation, table=label)

    def _prepare(self, work: Callable[[Executor], Any]) -> None:
        """Run *work* now, before the next operation is queued.

        For what must exist before an operation is sent (a partition for its row), which the
        pipeline's connection cannot answer before it syncs. Outside a transaction the work
        runs on another pooled connection and commits there (an empty partition is harmless
        if the pipeline's own transaction then rolls back); inside one, on its connection.
        """
        if self._savepoint is None:
            self._side(work)
            return
        # In a transaction, on its own connection (another one would wait for the locks this
        # transaction holds): the pipeline syncs, leaves pipeline mode for the work and
        # enters it again. After a failure the operation is aborted anyway: nothing to make.
        if self._first_error is None:
            self.sync()
        if self._first_error is None:
            self._px.close(end_transaction=False)
            try:
                self._side(work)
            finally:
                self._px.open()

    # --- syncing ------------------------------------------------------------------------------

    def sync(self) -> None:
        """Send what is queued, wait for every result and resolve the handles."""
        if self._queue:
            entries, self._queue, self._bytes = self._queue, [], 0
            with contextlib.suppress(OrsoError):
                self._px.sync()  # a broken connection: every outcome below says so
            px = self._px
            outcome = px.outcome
            for handle, cur, kind, label, finish in entries:
                if self._first_error is not None:
                    handle._fail(self._aborted(label))
                    continue
                try:
                    value = finish(outcome(cur, kind, label))
                except Aborted:  # pragma: no cover - a failed BEGIN, or a broken connection
                    # Skipped by the server: its BEGIN failed, or the connection broke.
                    self._fail(handle, px.broken or _begin_failed(label))
                    continue
                except Exception as exc:  # noqa: BLE001 - delivered on the handle
                    self._fail(handle, exc)
                    continue
                handle._state = _DONE
                handle._value = value
            px.release_all([entry[1] for entry in entries])
            self._failures = [h for h in self._failures if not h._observed]

    def _fail(self, handle: Pending[Any], error: BaseException) -> None:
        handle._fail(error)
        self._failures.append(handle)
        if self.transaction and self._first_error is None:
            self._first_error = handle

    # --- the end ------------------------------------------------------------------------------

    def _begin(self) -> None:
        if self._savepoint is not None:
            self._px.send(Statement(sql.SQL("SAVEPOINT {}").format(self._savepoint)), binary=False)
        elif self.transaction:
            self._px.send(_BEGIN, binary=False)

    def _finish(self, *, raising: bool) -> None:
        """Sync, commit or roll back, and raise what went wrong that nobody looked at.

        When the ``with`` block raised, an autocommit pipeline still runs what was queued
        (as calls made on a ``Database`` before the exception would have run), and a
        transaction is rolled back.
        """
        try:
            if self._px.broken is None:
                if not (raising and self.transaction):
                    with contextlib.suppress(OrsoError):
                        self.sync()
                if self.transaction:
                    self._end(commit=not raising and self._first_error is None)
        finally:
            self._closed = True
            # Left queued only when the connection broke before they were sent.
            for handle, _, _, label, _ in self._queue:  # pragma: no cover - a race
                handle._fail(self._px.broken or _rolled_back(label))
            self._queue.clear()
            self._px.close(end_transaction=self._savepoint is None)
        if raising:
            return
        if self._first_error is not None:
            raise _error_of(self._first_error)
        for handle in self._failures:
            if not handle._observed:
                raise _error_of(handle)

    def _end(self, *, commit: bool) -> None:
        queued, self._queue = self._queue, []
        for handle, _, _, label, _ in queued:
            handle._fail(_rolled_back(label, nested=self._savepoint is not None))
        if self._savepoint is None:
            cur = self._px.send(_COMMIT if commit else _ROLLBACK, binary=False)
        else:
            # After a Sync of its own: an error among what was queued last would otherwise
            # make the server skip the rollback, and leave the enclosing transaction failed.
            self._px.boundary()
            name = self._savepoint
            if not commit:
                undo = Statement(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(name))
                self._px.send(undo, binary=False)
            cur = self._px.send(
                Statement(sql.SQL("RELEASE SAVEPOINT {}").format(name)), binary=False
            )
            commit = True  # the outcome of the release says whether the transaction goes on
        with contextlib.suppress(OrsoError):
            self._px.sync()
        if commit:
            self._px.outcome(cur, ROWCOUNT, None)  # a failed COMMIT raises here

    # --- what does not run here ---------------------------------------------------------------

    def _not_here(self) -> OrsoError:
        return QueryError(
            "this operation cannot run in a pipeline (it needs several statements, a result "
            "before its next step, or a stream); run it on the Database or a transaction"
        )

    def _read(self, work: Callable[[Executor], T]) -> T:  # noqa: ARG002
        raise self._not_here()

    def _write(self, work: Callable[[Executor], T]) -> T:  # noqa: ARG002
        raise self._not_here()

    def _atomic(
        self,
        work: Callable[[Executor], T],  # noqa: ARG002
        *,
        timeout: float | None = None,  # noqa: ARG002
    ) -> T:
        raise self._not_here()

    def _iterate(
        self,
        stmt: Statement,  # noqa: ARG002
        batch_size: int,  # noqa: ARG002
        table: str | None,  # noqa: ARG002
        timeout: float | None = None,  # noqa: ARG002
    ) -> Iterator[Any]:
        raise self._not_here()

    def _check_lock(self, lock: object, table: str | None) -> None:
        if lock is None:
            return
        if not self.transaction:
            msg = (
                "a row lock lasts until its transaction ends, and in an autocommit pipeline "
                "every operation is a transaction of its own: use db.pipeline(transaction=True)"
            )
            raise QueryError(msg, table=table, value=lock)
        if getattr(lock, "nowait", False):
            msg = "a NOWAIT lock needs a savepoint of its own, which a pipeline cannot give"
            raise QueryError(msg, table=table, value=lock)


def _error_of(handle: Pending[Any]) -> BaseException:
    handle._observed = True
    assert handle._error is not None  # noqa: S101 - a failed handle holds its error
    return handle._error


def _rolled_back(label: str, *, nested: bool = False) -> OrsoError:
    undone = "savepoint" if nested else "transaction"
    msg = f"not run: the pipeline's block raised, and its {undone} was rolled back"
    return PipelineAbortedError(msg, operation=0, table=label)


def _begin_failed(label: str) -> OrsoError:  # pragma: no cover - see sync()
    return QueryError("the pipeline's transaction could not begin", table=label)


@contextlib.contextmanager
def pipelined(
    ex: Executor,
    *,
    transaction: bool,
    max_pending: int,
    max_bytes: int,
    side: Callable[[Callable[[Executor], Any]], Any],
    savepoint: bool = False,
    synchronous_commit: bool = True,
) -> Iterator[Pipeline]:
    """Run the block with a :class:`Pipeline` on *ex*'s connection; end it as its mode says.

    With *savepoint*, the connection is in a transaction the caller owns: the pipeline runs
    in a savepoint of it and leaves it open. Without *synchronous_commit*, the connection's
    ``synchronous_commit`` is ``off`` for the block and put back afterwards.
    """
    if type(max_pending) is not int or max_pending < 1:
        msg = f"max_pending must be a positive int, not {max_pending!r}"
        raise ConfigError(msg, value=max_pending)
    if type(max_bytes) is not int or max_bytes < 1:
        msg = f"max_bytes must be a positive int, not {max_bytes!r}"
        raise ConfigError(msg, value=max_bytes)
    if synchronous_commit not in (True, False):
        msg = f"synchronous_commit must be True or False, not {synchronous_commit!r}"
        raise ConfigError(msg, value=synchronous_commit)
    name = sql.Identifier(f"orso_pg_pipeline_{next(_savepoints)}") if savepoint else None
    before = None
    if not synchronous_commit:
        before = ex.scalar(_SYNC_COMMIT)
        ex.scalar(Statement(_SET_COMMIT, ("off",)))
    try:
        px = PipelineExecutor(ex)
        px.open()
        p = Pipeline(
            px,
            transaction=transaction or savepoint,
            max_pending=max_pending,
            max_bytes=max_bytes,
            side=side,
            savepoint=name,
        )
        try:
            p._begin()
            yield p
        except BaseException:
            p._finish(raising=True)
            raise
        p._finish(raising=False)
    finally:
        if before is not None:
            # A lost connection is discarded by the pool, with its setting.
            with contextlib.suppress(ConnectionLostError):
                ex.scalar(Statement(_SET_COMMIT, (before,)))


_SYNC_COMMIT: Final = Statement(sql.SQL("SELECT current_setting('synchronous_commit')"))
_SET_COMMIT: Final = sql.SQL("SELECT set_config('synchronous_commit', %s, false)")
