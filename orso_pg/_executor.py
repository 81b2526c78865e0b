"""The executor: the only code that talks to a psycopg connection.

Owns running statements (reads always in binary format, so BYTEA never goes through hex text),
COPY, server-side cursors, the translation of driver errors into :mod:`orso_pg.errors` by
SQLSTATE, statement listeners (logging and counting), and turning rows into model instances.
It must not decide what SQL to run (the compiler does) nor manage pools and transactions
(the session layer does): it is handed a connection and uses it. The one transaction it
opens itself is the read-only snapshot that statements fetched together share when the
connection is not already in a transaction.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import psycopg
import psycopg_pool
from psycopg import sql

from orso_pg import _adapters, _vector, errors
from orso_pg._compiler import Statement
from orso_pg._schema import model_of_table
from orso_pg._types import Refused, Unloadable
from orso_pg.session import _watchdog

if TYPE_CHECKING:
    from orso_pg._schema import Column, TableMeta

__all__ = [
    "ALL",
    "ONE",
    "ROWCOUNT",
    "SCALAR",
    "Aborted",
    "Executor",
    "Listener",
    "PipelineExecutor",
    "ServerListener",
    "loader",
    "shorten",
    "translate",
]

logger = logging.getLogger("orso_pg")

M = TypeVar("M")
Listener = Callable[[str, tuple[Any, ...]], None]


class ServerListener:
    """A listener that is also told the server: ``listener(text, params, server=name)``.

    ``Database.add_listener`` wraps a listener in it when the listener takes a ``server``
    argument, so the executor passes the name of the server the statement runs on (a primary
    or a replica), while listeners written for two arguments keep being called with two.
    """

    __slots__ = ("listener",)

    def __init__(self, listener: Callable[..., object]) -> None:
        self.listener = listener

    def __call__(self, text: str, params: tuple[Any, ...], server: str = "") -> None:
        self.listener(text, params, server=server)

    @staticmethod
    def wanted(listener: Callable[..., object]) -> bool:
        """Whether *listener* takes a ``server`` argument by keyword."""
        try:
            parameter = inspect.signature(listener).parameters.get("server")
        except (TypeError, ValueError):
            return False
        return parameter is not None and parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )


_IDLE: Final = psycopg.pq.TransactionStatus.IDLE
_SNAPSHOT: Final = sql.SQL("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
_END_SNAPSHOT: Final = sql.SQL("COMMIT")

_RENDERED: Final[dict[int, tuple[sql.Composable, bytes]]] = {}
_RENDERED_SIZE: Final = 2048

_clock: Final = time.perf_counter


def _debug() -> bool:
    return logger.isEnabledFor(logging.DEBUG)


def render(query: sql.Composable) -> bytes:
    """Return the bytes of *query*, cached per query object.

    Compiled shapes are cached objects (see :mod:`orso_pg._compiler`), so the same object comes
    back for every call of an operation and is rendered once. Connections use UTF-8 (set by
    :mod:`orso_pg.session._database`), which is what rendering without a connection assumes.
    """
    # By id, the entry holding the object so that its id cannot be reused while stored: a
    # dict lookup and an identity check, on every statement sent.
    entry = _RENDERED.get(id(query))
    if entry is not None and entry[0] is query:
        return entry[1]
    if len(_RENDERED) >= _RENDERED_SIZE:
        _RENDERED.clear()
    data = query.as_bytes(None)
    _RENDERED[id(query)] = (query, data)
    return data


class Executor:
    """Runs statements on one borrowed connection.

    Args:
        conn: The connection, owned by the caller.
        listeners: Called with the statement text and parameters before each statement.
        deadline: Seconds a statement may wait for the server's reply before the connection is
            shut and :class:`~orso_pg.errors.ServerUnavailableError` raised (None: no limit).
        server: Where the connection goes (``host:port/db``), for log records.
        slow: Statements taking at least this many seconds are logged at WARNING.
    """

    __slots__ = ("conn", "deadline", "listeners", "server", "slow")

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        listeners: Sequence[Listener] = (),
        *,
        deadline: float | None = None,
        server: str = "",
        slow: float | None = None,
    ) -> None:
        self.conn = conn
        self.listeners = listeners
        self.deadline = deadline
        self.server = server
        self.slow = slow
        if _vector.state.active:
            # Vector models exist: a connection opened before the model or the extension
            # gets pgvector's adapters on its first use (once; the pool's configure step
            # registers them on connections opened after).
            _adapters.prepare(conn)

    def _notify(self, query: bytes, params: tuple[Any, ...]) -> None:
        if self.listeners:
            text = query.decode("utf-8", "replace")
            for listener in self.listeners:
                if type(listener) is ServerListener:
                    listener(text, params, self.server)
                else:
                    listener(text, params)

    def _arm(self) -> _watchdog.Guard | None:
        return None if self.deadline is None else _watchdog.arm(self.conn, self.deadline)

    def _failed(
        self, exc: BaseException, guard: _watchdog.Guard | None, table: str | None
    ) -> errors.OrsoError:
        if guard is not None and guard.disarm():
            msg = (
                f"no reply from the server at {self.server or 'PostgreSQL'} within "
                f"{guard.seconds:g} s (the client-side deadline); the connection was closed"
            )
            return errors.ServerUnavailableError(msg, table=table)
        return translate(exc, table=table)

    def _done(self, started: float, query: bytes, params: Sequence[Any]) -> None:
        """Log a statement that ran: WARNING when slow, else DEBUG (when enabled)."""
        elapsed = _clock() - started
        if self.slow is not None and elapsed >= self.slow:
            level = logging.WARNING
        elif logger.isEnabledFor(logging.DEBUG):
            level = logging.DEBUG
        else:
            return
        logger.log(
            level,
            "%s%.1f ms on %s: %s %s",
            "slow statement, " if level == logging.WARNING else "",
            elapsed * 1000.0,
            self.server or "?",
            query.decode("utf-8", "replace"),
            shorten(params),
        )

    def _run(self, stmt: Statement, table: str | None, *, binary: bool) -> psycopg.Cursor[Any]:
        query = render(stmt.query)
        if self.listeners:
            self._notify(query, stmt.params)
        started = _clock()
        guard = None if self.deadline is None else _watchdog.arm(self.conn, self.deadline)
        try:
            # Inside the try: on a connection that already broke, cursor() raises too.
            cur = self.conn.cursor(binary=binary)
            cur.execute(query, stmt.params)
        except psycopg.Error as exc:
            raise self._failed(exc, guard, table) from exc
        if guard is not None:
            guard.disarm()
        if self.slow is not None or _debug():
            self._done(started, query, stmt.params)
        return cur

    def fetch_all(self, stmt: Statement, *, table: str | None = None) -> list[tuple[Any, ...]]:
        """Run *stmt* and return every row as a tuple."""
        if stmt.settings:
            return self.fetch_together([stmt], table=table)[0]
        cur = self._run(stmt, table, binary=True)
        try:
            return cur.fetchall()
        except psycopg.Error as exc:  # a value the loaders refuse, e.g. 'infinity' timestamps
            raise self._fetch_failed(cur, exc, table) from exc

    def fetch_described(
        self, stmt: Statement, *, table: str | None = None
    ) -> tuple[list[tuple[str, int]], list[tuple[Any, ...]]]:
        """Run *stmt*; return its result columns (name, type oid) and every row as a tuple."""
        cur = self._run(stmt, table, binary=True)
        if cur.description is None:  # a statement without a result, e.g. UPDATE without RETURNING
            return [], []
        try:
            rows = cur.fetchall()
        except psycopg.Error as exc:
            raise translate(exc, table=table) from exc
        return [(c.name, c.type_code) for c in cur.description], rows

    def fetch_one(self, stmt: Statement, *, table: str | None = None) -> tuple[Any, ...] | None:
        """Run *stmt* and return its first row, or None."""
        if stmt.settings:
            rows = self.fetch_together([stmt], table=table)[0]
            return rows[0] if rows else None
        cur = self._run(stmt, table, binary=True)
        try:
            return cur.fetchone()
        except psycopg.Error as exc:
            raise self._fetch_failed(cur, exc, table) from exc

    def _fetch_failed(
        self, cur: psycopg.Cursor[Any], exc: psycopg.Error, table: str | None
    ) -> errors.OrsoError:
        """Return the error for rows that arrived but could not be read.

        A loader refusing a stored value (``'infinity'`` or a year after 9999 in a timestamp,
        which Python's datetime cannot hold) raises psycopg's DataError naming neither the
        column nor the row: the received result is read again value by value to find them,
        and the row is named by its primary key when the result holds it.
        """
        if not isinstance(exc, psycopg.DataError) or exc.sqlstate is not None:
            return translate(exc, table=table)
        result = cur.pgresult
        found = None if result is None else _unreadable(cur, result)
        if found is None:
            return translate(exc, table=table)
        row, col = found
        column = result.fname(col) if result is not None else None
        name = column.decode("utf-8", "replace") if column is not None else f"#{col + 1}"
        where = self._row_key(cur, result, row, col) if result is not None else None
        message = (
            f"{exc}: a stored value Python cannot hold (such as 'infinity' or a year after "
            f"9999) [table {table!r}, column {name!r}, {where or f'row {row} of the result'}]"
        )
        return errors.DataError(message, table=table, column=name)

    def _row_key(
        self, cur: psycopg.Cursor[Any], result: psycopg.pq.abc.PGresult, row: int, col: int
    ) -> str | None:
        """Return ``key = value`` for the primary key of the table column *col* comes from."""
        relation = result.ftable(col)
        if not relation:
            return None
        try:
            with self.conn.cursor() as probe:
                probe.execute(_PRIMARY_KEY, (relation,))
                attnums: dict[int, str] = dict(probe.fetchall())
        except psycopg.Error:
            return None
        parts = []
        for j in range(result.nfields):
            if result.ftable(j) == relation and result.ftablecol(j) in attnums:
                loader = _loader(cur, result, j)
                data = result.get_value(row, j)
                try:
                    value = None if data is None or loader is None else loader.load(data)
                except psycopg.Error:
                    return None
                parts.append(f"{attnums[result.ftablecol(j)]} = {value!r}")
        return "row with " + ", ".join(parts) if parts else None

    def fetch_together(
        self, stmts: Sequence[Statement], *, table: str | None = None
    ) -> list[list[tuple[Any, ...]]]:
        """Run *stmts* in one round trip and one snapshot; return the rows of each.

        They are sent in pipeline mode. Outside a transaction they run in a ``REPEATABLE READ,
        READ ONLY`` transaction of their own, so they see the same committed data (as one
        statement would, and faster than one statement joining them); inside a transaction,
        what its isolation level shows.
        """
        conn = self.conn
        queries = [render(stmt.query) for stmt in stmts]
        for query, stmt in zip(queries, stmts, strict=True):
            for setting in stmt.settings:
                self._notify(render(setting.query), setting.params)
            self._notify(query, stmt.params)
        own = conn.info.transaction_status == _IDLE
        started = time.perf_counter()
        guard = self._arm()
        try:
            cursors = [conn.cursor(binary=True) for _ in stmts]
            failed: psycopg.Error | None = None
            try:
                with conn.pipeline():
                    try:
                        if own:
                            conn.execute(_SNAPSHOT)
                        for cur, query, stmt in zip(cursors, queries, stmts, strict=True):
                            for setting in stmt.settings:
                                conn.execute(render(setting.query), setting.params)
                            cur.execute(query, stmt.params)
                        if own:
                            conn.execute(_END_SNAPSHOT)
                    except psycopg.Error as exc:
                        # Leave the block normally: psycopg logs the pipeline's own "aborted"
                        # error on stderr when the block exits with an exception.
                        failed = exc
            except psycopg.Error as exc:
                failed = failed or exc
            if failed is not None:
                raise failed
        except psycopg.Error as exc:
            error = self._failed(exc, guard, table)
            if own and not conn.closed and conn.info.transaction_status != _IDLE:
                # A statement failed, so the COMMIT was skipped: end the snapshot here rather
                # than hand the connection back inside a failed transaction.
                conn.rollback()
            raise error from exc
        if guard is not None:
            guard.disarm()
        rows = []
        for cur in cursors:
            try:
                rows.append(cur.fetchall())
            except psycopg.Error as exc:
                raise self._fetch_failed(cur, exc, table) from exc
        for query, stmt in zip(queries, stmts, strict=True):
            self._done(started, query, stmt.params)
        return rows

    def bind(self, stmt: Statement, *, table: str | None = None) -> str:
        """Return *stmt* with its values bound client-side by psycopg, for the columnar reader.

        The text is what psycopg's client-side cursor would send: every value quoted by libpq
        for this connection's encoding, never formatted by hand.
        """
        query = render(stmt.query)
        self._notify(query, stmt.params)
        try:
            return psycopg.ClientCursor(self.conn).mogrify(query, stmt.params)
        except psycopg.Error as exc:
            raise translate(exc, table=table) from exc

    def copy_out(
        self,
        stmt: Statement,
        write: Callable[[bytes], object],
        *,
        binary: bool,
        table: str | None = None,
    ) -> int:
        """Run ``COPY (stmt) TO STDOUT`` and hand each chunk to *write*; return the row count."""
        options = sql.SQL("(FORMAT BINARY)" if binary else "(FORMAT CSV, HEADER)")
        query = render(sql.SQL("COPY ({}) TO STDOUT {}").format(stmt.query, options))
        self._notify(query, stmt.params)
        try:
            cur = self.conn.cursor()
            with cur.copy(query, stmt.params or None) as copy:
                for chunk in copy:
                    write(bytes(chunk))
        except psycopg.Error as exc:
            raise translate(exc, table=table) from exc
        return max(cur.rowcount, 0)

    @property
    def idle(self) -> bool:
        """Whether no transaction is open on the connection (autocommit, between statements)."""
        return bool(self.conn.info.transaction_status == _IDLE)

    def scalar(self, stmt: Statement, *, table: str | None = None) -> Any:
        """Run *stmt* and return the first column of its first row (None without a row)."""
        row = self.fetch_one(stmt, table=table)
        return None if row is None else row[0]

    def execute(self, stmt: Statement, *, table: str | None = None) -> int:
        """Run *stmt* and return the number of rows it affected."""
        return self._run(stmt, table, binary=False).rowcount

    @contextlib.contextmanager
    def transaction(self, *, force_rollback: bool = False) -> Iterator[None]:
        """Run the block in a transaction, or in a savepoint when one is already open.

        Leaving the block normally commits (releases the savepoint) unless *force_rollback* is
        set; leaving it by an exception rolls its work back. A failed commit is translated.
        """
        try:
            with self.conn.transaction(force_rollback=force_rollback):
                yield
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def stream(
        self, stmt: Statement, *, batch_size: int = 2000, table: str | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """Yield the rows of *stmt* from a server-side cursor, *batch_size* at a time.

        The caller must hold a transaction open while iterating (named cursors live in one).
        """
        query = render(stmt.query)
        for setting in stmt.settings:
            self._run(setting, table, binary=False)
        self._notify(query, stmt.params)
        guard = None
        try:
            with self.conn.cursor(name=_cursor_name(), binary=True) as cur:
                cur.itersize = batch_size
                started = time.perf_counter()
                guard = self._arm()
                cur.execute(query, stmt.params)
                if guard is not None:
                    guard.disarm()
                self._done(started, query, stmt.params)
                while True:
                    # Each page is one wait for the server: each gets the deadline.
                    guard = self._arm()
                    try:
                        rows = cur.fetchmany(batch_size)
                    except psycopg.DataError as exc:
                        raise self._fetch_failed(cur, exc, table) from exc
                    finally:
                        if guard is not None:
                            guard.disarm()
                    if not rows:
                        return
                    yield from rows
        except psycopg.Error as exc:
            raise self._failed(exc, guard, table) from exc

    def copy_in(
        self,
        query: sql.Composable,
        types: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        table: str | None = None,
    ) -> int:
        """Stream *rows* through ``COPY ... FROM STDIN``; return how many.

        For callers that need not know which row failed: a driver error is translated, and an
        exception raised while producing the rows propagates as it is.
        """
        try:
            return self.copy_rows(query, types, rows, table=table)
        except CopyRowError as exc:
            cause = exc.__cause__
            if isinstance(cause, psycopg.Error):
                raise translate(cause, table=table) from cause
            raise cause or exc from None

    def copy_rows(
        self,
        query: sql.Composable,
        types: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        table: str | None = None,
    ) -> int:
        """Stream *rows* through *query* (a ``COPY ... FROM STDIN``); return the rows loaded.

        Unlike :meth:`copy_in`, a row that fails in the client (while it is produced by *rows*
        or turned into COPY data by psycopg) raises :class:`CopyRowError` with its index and
        the original exception as ``__cause__``, so the caller can name it. Errors the server
        reports are translated as usual; their ``__cause__.diag.context`` names the line.
        """
        data = render(query)
        self._notify(data, ())
        written = 0
        sending = False
        cur = self.conn.cursor()
        started = time.perf_counter()
        guard = self._arm()
        try:
            with cur.copy(data) as copy:
                copy.set_types(list(types))
                write_row = copy.write_row
                sending = True
                for row in rows:
                    write_row(row)
                    written += 1
                sending = False
        except psycopg.Error as exc:
            # Errors from the client's own dumpers carry no SQLSTATE; a broken connection is
            # an OperationalError and stays one.
            client_side = exc.sqlstate is None and not isinstance(exc, psycopg.OperationalError)
            if sending and client_side:
                if guard is not None:
                    guard.disarm()
                raise CopyRowError(written) from exc
            raise self._failed(exc, guard, table) from exc
        except Exception as exc:
            if guard is not None:
                guard.disarm()
            raise CopyRowError(written) from exc
        if guard is not None:
            guard.disarm()
        self._done(started, data, (f"{written} rows",))
        return cur.rowcount if cur.rowcount >= 0 else written


def shorten(params: Sequence[Any], limit: int = 80) -> str:
    """Return *params* for a log record, each value's repr cut to *limit* characters."""
    if not params:
        return "()"
    return "(" + ", ".join(errors.describe_value(p)[:limit] for p in params) + ")"


class CopyRowError(Exception):
    """Row *index* of a COPY could not be sent; the reason is ``__cause__`` (internal signal)."""

    def __init__(self, index: int) -> None:
        super().__init__(f"row {index} of the COPY could not be sent")
        self.index = index


# --- pipeline mode ----------------------------------------------------------------------------

#: What a queued statement's result becomes: its first row, every row, the rows it affected,
#: or the first column of its first row.
ONE: Final = 0
ALL: Final = 1
ROWCOUNT: Final = 2
SCALAR: Final = 3

_BINARY: Final = psycopg.pq.Format.BINARY
_TEXT: Final = psycopg.pq.Format.TEXT


class _PipelineCursor(psycopg.Cursor[Any]):
    """A cursor that keeps the error of its own result.

    In pipeline mode psycopg processes every result a sync brings and raises only the first
    error; the others are lost. Each queued statement gets one of these, so that every
    statement's own error (or psycopg's ``PipelineAborted``) is known after the sync.
    """

    __slots__ = ("error",)
    error: psycopg.Error | None

    def _check_results(self, results: list[psycopg.pq.abc.PGresult]) -> None:
        try:
            super()._check_results(results)
        except psycopg.Error as exc:
            self.error = exc
            raise


class Aborted(Exception):  # noqa: N818 - an internal signal, never raised to users
    """The statement was skipped by the server: an earlier one in its pipeline failed."""


class PipelineExecutor:
    """Runs statements on one connection in pipeline mode: sent now, results at each sync.

    Args:
        ex: The executor of the connection (its listeners, deadline and server name apply).

    :meth:`send` queues a statement and returns its cursor; :meth:`boundary` ends the
    server's implicit transaction after the statements queued so far (an error then aborts
    nothing queued after it); :meth:`sync` sends everything and waits for every result;
    :meth:`outcome` reads one statement's result after the sync, and :meth:`release_all`
    takes the cursors back for the next statements. It decides nothing about transactions or
    which statements to send: the pipeline session does.
    """

    __slots__ = ("_block", "_pipe", "_spare", "broken", "conn", "ex")

    def __init__(self, ex: Executor) -> None:
        self.ex = ex
        self.conn = ex.conn
        self._block: contextlib.AbstractContextManager[psycopg.Pipeline] | None = None
        self._pipe: psycopg.Pipeline | None = None
        # Cursors whose results were read, sent again: a cursor costs more to make than to
        # reuse, and in pipeline mode one is needed per statement in flight.
        self._spare: list[_PipelineCursor] = []
        #: The error that broke the connection, once it broke.
        self.broken: errors.OrsoError | None = None

    def open(self) -> None:
        """Enter pipeline mode."""
        try:
            self._block = self.conn.pipeline()
            self._pipe = self._block.__enter__()
        except psycopg.Error as exc:
            raise translate(exc) from exc

    def close(self, *, end_transaction: bool = True) -> None:
        """Leave pipeline mode; results left are dropped.

        A transaction left open is rolled back, unless *end_transaction* is false (a pipeline
        inside a transaction it does not own).
        """
        block, self._block, self._pipe = self._block, None, None
        if block is not None:
            with contextlib.suppress(psycopg.Error):
                block.__exit__(None, None, None)
        conn = self.conn
        if end_transaction and not conn.closed and conn.info.transaction_status != _IDLE:
            try:
                conn.rollback()
            except psycopg.Error:  # pragma: no cover - the connection broke just now
                conn.close()  # the pool sees it closed and opens another

    def send(self, stmt: Statement, *, binary: bool = True) -> _PipelineCursor:
        """Queue *stmt*; return the cursor its result will arrive on."""
        query = render(stmt.query)
        if self.ex.listeners:
            self.ex._notify(query, stmt.params)
        spare = self._spare
        cur = spare.pop() if spare else _PipelineCursor(self.conn)
        cur.error = None
        if binary is not (cur.format is _BINARY):
            cur.format = _BINARY if binary else _TEXT
        try:
            cur.execute(query, stmt.params)
        except psycopg.Error as exc:
            # psycopg reads results while it sends and raises the first error it finds, which
            # may belong to any statement queued before: each cursor keeps its own (see
            # _PipelineCursor). Only a broken connection is this call's business.
            self._check_broken(exc)
        return cur

    def boundary(self) -> None:
        """End the server's implicit transaction here (a Sync message, not waited for)."""
        assert self._pipe is not None  # noqa: S101 - open() came first
        self._pipe._enqueue_sync()

    def sync(self) -> None:
        """Send every queued statement and wait for all their results."""
        assert self._pipe is not None  # noqa: S101 - open() came first
        pipe = self._pipe
        guard = self.ex._arm()
        try:
            pipe.sync()
        except psycopg.Error as exc:
            # psycopg stops at the first error it raises while sending and leaves the results
            # after it unread: read them, so that every statement gets its own outcome.
            error: psycopg.Error = exc
            for _ in range(len(pipe.result_queue) + 1):
                if not pipe.result_queue or self.conn.broken:
                    break
                try:
                    self.conn.wait(pipe._fetch_gen(flush=False))
                except psycopg.Error as later:
                    error = later
            if guard is not None and guard.disarm():
                self.broken = self.ex._failed(exc, guard, None)
                guard = None
            self._check_broken(error)
        if guard is not None:
            guard.disarm()

    def _check_broken(self, exc: psycopg.Error) -> None:
        if self.broken is None and (self.conn.closed or self.conn.broken):
            self.broken = translate(exc)
        if self.broken is not None:
            raise self.broken from exc

    def release_all(self, curs: list[Any]) -> None:
        """Take back cursors :meth:`send` returned, their outcomes read (or not wanted)."""
        self._spare.extend(curs)

    def outcome(self, cur: _PipelineCursor, kind: int, table: str | None) -> Any:
        """Return the result of a statement after the sync, as *kind* asks.

        Raises:
            Aborted: the server skipped it after an earlier error.
            OrsoError: the statement failed (translated), or its rows could not be read.
        """
        error = cur.error
        if error is not None:
            if isinstance(error, psycopg.errors.PipelineAborted):  # pragma: no cover
                raise Aborted  # the session fails these itself, without reading them
            raise translate(error, table=table) from error
        if cur.pgresult is None:
            if self.broken is not None:
                raise self.broken
            raise Aborted  # pragma: no cover - never sent: the connection broke before it
        if kind == ROWCOUNT:
            return cur.rowcount
        try:
            if kind == ALL:
                return cur.fetchall()
            row = cur.fetchone()
        except psycopg.Error as exc:
            raise self.ex._fetch_failed(cur, exc, table) from exc
        if kind == SCALAR:
            return None if row is None else row[0]
        return row


_cursor_counter = 0


def _cursor_name() -> str:
    global _cursor_counter  # noqa: PLW0603 - a process-wide counter keeps names unique
    _cursor_counter += 1
    return f"orso_pg_cursor_{_cursor_counter}"


# --- error translation ------------------------------------------------------------------------

_PRIMARY_KEY: Final = sql.SQL(
    "SELECT a.attnum, a.attname FROM pg_index i "
    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
    "WHERE i.indrelid = %s AND i.indisprimary"
)


def _loader(
    cur: psycopg.Cursor[Any], result: psycopg.pq.abc.PGresult, col: int
) -> psycopg.abc.Loader | None:
    oid = result.ftype(col)
    cls = cur.adapters.get_loader(oid, psycopg.pq.Format(result.fformat(col)))
    return None if cls is None else cls(oid, cur)


def _unreadable(
    cur: psycopg.Cursor[Any], result: psycopg.pq.abc.PGresult
) -> tuple[int, int] | None:
    """Return the (row, column) of the first value of *result* its loader refuses, if any."""
    loaders = [_loader(cur, result, j) for j in range(result.nfields)]
    for i in range(result.ntuples):
        for j, loader in enumerate(loaders):
            data = result.get_value(i, j)
            if data is None or loader is None:
                continue
            try:
                loader.load(data)
            except psycopg.Error:
                return i, j
    return None


_KEY_DETAIL = re.compile(r"Key \((?P<cols>.+?)\)=\((?P<vals>.*)\)")


def translate(exc: BaseException, *, table: str | None = None) -> errors.OrsoError:
    """Return the orso_pg error for a psycopg or psycopg_pool exception.

    The message keeps PostgreSQL's own text and adds what the server reported about the table,
    column, constraint and key values. The caller raises it ``from exc`` so the driver error stays
    reachable as ``__cause__``.
    """
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return errors.PoolTimeoutError(f"no connection available: {exc}")
    if isinstance(exc, psycopg_pool.PoolClosed):
        return errors.PoolError("this Database is closed; open a new Database to run statements")
    if isinstance(exc, errors.OrsoError):
        return exc
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    table_name = (getattr(diag, "table_name", None) if diag else None) or table
    column = getattr(diag, "column_name", None) if diag else None
    constraint = getattr(diag, "constraint_name", None) if diag else None
    detail = getattr(diag, "message_detail", None) if diag else None
    value: object = errors._UNSET
    if detail:
        match = _KEY_DETAIL.search(detail)
        if match:
            column = column or match["cols"]
            value = match["vals"]
    cls = errors.class_for_sqlstate(sqlstate)
    if sqlstate is None and isinstance(exc, psycopg.OperationalError):
        cls = errors.ConnectionLostError
    primary = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    context = []
    if table_name:
        context.append(f"table {table_name!r}")
    if column:
        context.append(f"column {column!r}")
    if constraint:
        context.append(f"constraint {constraint!r}")
    message = primary
    if cls is errors.MissingTableError:
        missing = _MISSING_RELATION.search(primary)
        table_name = missing["name"].rpartition(".")[2] if missing else table_name
        primary += _how_to_create(table_name)
        message = primary
    if detail:
        message += f" ({detail.rstrip('.')})"
    if context:
        message += " [" + ", ".join(context) + "]"
    return cls(
        message,
        sqlstate=sqlstate,
        constraint=constraint,
        detail=detail,
        table=table_name,
        column=column,
        value=value,
    )


_MISSING_RELATION = re.compile(r'relation "(?P<name>[^"]+)" does not exist')


def _how_to_create(table: str | None) -> str:
    """Return the advice appended to a missing-table error: which model, and what creates it."""
    meta = None if table is None else model_of_table(table)
    if meta is None:
        return (
            "; migrations create the tables of models: Migrations.init(db, [migration(Model)]) "
            "or `orso-pg migrate`"
        )
    model = meta.cls.__name__
    entry = f"migration({model})" if table == meta.name else f"migration({model}, {table!r})"
    return (
        f"; the table of model {model} has not been created: Migrations.init(db, [{entry}]) "
        "or `orso-pg migrate` creates it"
    )


def refused(
    meta: TableMeta, table: str | None, column: Column, value: object, exc: Refused
) -> errors.ValidationError:
    """Return the :class:`ValidationError` for a value a column's dump refused."""
    name = table if table is not None else meta.name
    shown = errors.describe_value(value)
    msg = f"{name}.{column.name} = {shown}: {exc}"
    return errors.ValidationError(msg, table=name, column=column.name, value=value)


# --- rows to models ---------------------------------------------------------------------------


def loader(meta: TableMeta, *, preloaded: bool = False) -> Callable[[Sequence[Any]], Any]:
    """Return a function building a model instance from a row of every column, in order.

    Instances are made without calling ``__init__`` (as SQLAlchemy does on load): the row came
    from the table, so attrs validators and converters have nothing to check, and skipping them
    keeps reads close to building tuples. Loaders are generated once per model. With
    *preloaded*, the columns that load in batches (``load_many``) are taken as already loaded
    (see :func:`load_rows`).
    """
    cached = _LOADERS.get((meta, preloaded))
    if cached is not None:
        return cached
    cls = meta.cls
    namespace = _row_namespace(meta)
    namespace |= {"_new": object.__new__, "_cls": cls}
    direct = getattr(cls, "__setattr__", None) is object.__setattr__
    head = ["def load(row):", "  try:", "    o = _new(_cls)"]
    func: Callable[[Sequence[Any]], Any] = _generate(
        "load", head, meta, namespace, preloaded=preloaded, direct=direct, tail="    return o"
    )
    _LOADERS[meta, preloaded] = func
    return func


def _row_namespace(meta: TableMeta) -> dict[str, Any]:
    return {
        "_set": object.__setattr__,
        "_Unloadable": Unloadable,
        "_unloadable": functools.partial(unloadable_row, meta),
    }


def _generate(
    name: str,
    head: list[str],
    meta: TableMeta,
    namespace: dict[str, Any],
    *,
    preloaded: bool = False,
    direct: bool = False,
    tail: str = "",
) -> Any:
    """Compile function *name*: *head*, then one line setting ``o``'s attribute per column."""
    lines = list(head)
    for i, col in enumerate(meta.columns):
        expr = f"row[{i}]"
        if col.type.load is not None and not (preloaded and col.type.load_many is not None):
            namespace[f"_l{i}"] = col.type.load
            expr = f"(None if row[{i}] is None else _l{i}(row[{i}]))"
        lines.append(
            f"    o.{col.name} = {expr}" if direct else f"    _set(o, {col.name!r}, {expr})"
        )
    if tail:
        lines.append(tail)
    # A try costs nothing until it catches (Python 3.11+): the slow path finds the column.
    lines.extend(["  except _Unloadable:", "    raise _unloadable(row) from None"])
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from validated identifiers
    return namespace[name]


def load_rows(meta: TableMeta, rows: Sequence[Sequence[Any]]) -> list[Any]:
    """Build model instances from rows; each batch-loading column is loaded in one call.

    Compressed array columns decode all the rows' frames with ``codec.decode_many`` rather
    than one ``decode`` per row; other columns load row by row, as :func:`loader` does.
    """
    batched = [(i, col.type.load_many) for i, col in enumerate(meta.columns) if col.type.load_many]
    if not batched or len(rows) < 2:  # noqa: PLR2004
        load = loader(meta)
        return [load(row) for row in rows]
    mutable = [list(row) for row in rows]
    for i, load_many in batched:
        present = [k for k, row in enumerate(mutable) if row[i] is not None]
        try:
            loaded = load_many([mutable[k][i] for k in present])
        except errors.CompressionError as exc:
            row = present[exc.position] if exc.position is not None else None
            name = meta.columns[i].name
            error = errors.CompressionError(
                f"{meta.name}.{name}, row {row} of the result: {exc}", table=meta.name, column=name
            )
            error.position = row
            raise error from exc
        for k, value in zip(present, loaded, strict=True):
            mutable[k][i] = value
    load = loader(meta, preloaded=True)
    return [load(row) for row in mutable]


def load_stream(meta: TableMeta, rows: Iterable[Sequence[Any]], batch_size: int) -> Iterator[Any]:
    """Yield model instances from streamed rows, loading them *batch_size* rows at a time.

    When loading fails (a damaged frame), the row iterator is closed at once, so that a
    server-side cursor gives its connection back rather than wait for garbage collection.
    """
    try:
        if not any(col.type.load_many for col in meta.columns):
            load = loader(meta)
            yield from (load(row) for row in rows)
            return
        batch: list[Sequence[Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= batch_size:
                yield from load_rows(meta, batch)
                batch = []
        yield from load_rows(meta, batch)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


_LOADERS: dict[tuple[TableMeta, bool], Callable[[Sequence[Any]], Any]] = {}


def filler(meta: TableMeta) -> Callable[[object, Sequence[Any]], None]:
    """Return a function copying a returned row (every column, in order) into an instance.

    Generated once per model, as :func:`loader` is. Values are set with
    ``object.__setattr__`` (no attrs ``on_setattr`` hook runs: the row came from the table);
    a row of another length raises ``ValueError``, as ``zip(strict=True)``.
    """
    cached = _FILLERS.get(meta)
    if cached is not None:
        return cached
    n = len(meta.columns)
    head = [
        "def fill(o, row):",
        f"  if len(row) != {n}:",
        f"    raise ValueError('a returned row of ' + str(len(row)) + ' values, not {n}')",
        "  try:",
    ]
    func: Callable[[object, Sequence[Any]], None] = _generate(
        "fill", head, meta, _row_namespace(meta)
    )
    _FILLERS[meta] = func
    return func


_FILLERS: dict[TableMeta, Callable[[object, Sequence[Any]], None]] = {}


def unloadable_row(
    meta: TableMeta, row: Sequence[Any], table: str | None = None
) -> errors.DataError:
    """Return the :class:`DataError` for a row holding a value its column cannot load."""
    label = table if table is not None else meta.name
    pk = meta.primary_key
    key = None if pk is None else row[meta.columns.index(pk)]
    where = "a row" if pk is None else f"the row with {pk.name} = {key!r}"
    for col, value in zip(meta.columns, row, strict=True):
        # Batch-loaded (compressed) columns may hold loaded arrays here, and never raise this.
        if value is None or col.type.load is None or col.type.load_many is not None:
            continue
        try:
            col.type.load(value)
        except Unloadable as exc:
            msg = (
                f"{label}.{col.name} of {where} holds {errors.describe_value(value)}, which "
                f"the model cannot load: {exc} (written by another program, or the model "
                "lost a member?)"
            )
            return errors.DataError(
                msg, table=label, column=col.name, value=value, detail=where.removeprefix("the ")
            )
    msg = f"{label}: {where} holds a value the model cannot load"  # pragma: no cover
    return errors.DataError(msg, table=label)  # pragma: no cover
