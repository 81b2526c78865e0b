"""Held sessions: one pooled connection kept for a block, each operation committing on its own.

Owns :class:`Held`, the session ``Database.hold()`` yields: the per-call behaviour of a
``Database`` (autocommit; reads retried once on a fresh connection when the held one turns out
dead; operations of several statements in a transaction of their own) without a pool checkout
per call. It decides which connection runs a statement; it must not build SQL, and statements
go through the :class:`~orso_pg._executor.Executor` (or a ``Transaction`` for atomic work).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from orso_pg._compiler import Statement
from orso_pg._executor import Executor
from orso_pg.errors import ConnectionLostError, QueryError, ServerUnavailableError
from orso_pg.session._database import Session, Transaction

if TYPE_CHECKING:
    from orso_pg.session._database import Database

__all__ = ["Held", "held"]

T = TypeVar("T")


class Held(Session):
    """One pooled connection, held by one thread for a block; each call commits on its own.

    Obtained from :meth:`Database.hold`. Operations given it behave as on the ``Database``
    (autocommit, the same retries and errors) but skip the pool's checkout and return of a
    connection on every call. Not thread-safe: it belongs to the thread that opened it.
    """

    __module__ = "orso_pg"

    def __init__(self, db: Database, conn: psycopg.Connection[Any]) -> None:
        self._db = db
        self._conn: psycopg.Connection[Any] | None = conn

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"<Held connection to {self._db.server}, {state}>"

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            msg = "this held connection was given back; hold another with db.hold()"
            raise QueryError(msg)
        return self._conn

    def _replace(self) -> psycopg.Connection[Any]:
        """Give back the dead connection, sweep the pool and hold a live one."""
        dead, self._conn = self._conn, None
        if dead is not None:
            self._db._pool.putconn(dead)  # the pool sees it broken and discards it
        self._db._sweep()
        self._conn = self._db._getconn()
        return self._conn

    def _read(self, work: Callable[[Executor], T]) -> T:
        conn = self._connection()
        try:
            return work(self._db._executor(conn))
        except ServerUnavailableError:
            raise
        except ConnectionLostError:
            return work(self._db._executor(self._replace()))

    def _write(self, work: Callable[[Executor], T]) -> T:
        conn = self._connection()
        try:
            return work(self._db._executor(conn))
        except ServerUnavailableError:
            raise
        except ConnectionLostError:
            if conn.closed:
                self._replace()  # the next call gets a live connection; this one failed
            raise

    def _atomic(self, work: Callable[[Executor], T], *, timeout: float | None = None) -> T:
        # A transaction of its own on the held connection, as a Transaction's savepoint is.
        return Transaction(self._db, self._connection())._atomic(work, timeout=timeout)

    def _iterate(
        self, stmt: Statement, batch_size: int, table: str | None, timeout: float | None = None
    ) -> Iterator[Any]:
        # A stream holds a transaction open while it is read: on a connection of its own, so
        # that the calls made meanwhile still commit one by one. From the primary, as every
        # read of the block: a replica may not have the block's writes yet.
        self._connection()
        return self._db._iterate_primary(stmt, batch_size, table, timeout)


@contextlib.contextmanager
def held(db: Database) -> Iterator[Held]:
    """Hold one of *db*'s pooled connections for the block; give it back afterwards."""
    conn = db._getconn()
    session = Held(db, conn)
    try:
        yield session
    finally:
        last, session._conn = session._conn, None
        if last is not None:
            db._pool.putconn(last)  # a transaction left open is rolled back by the pool
