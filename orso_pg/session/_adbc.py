"""The columnar reader: a few ADBC PostgreSQL connections per ``Database``.

The ADBC driver reads a ``SELECT`` into Arrow through binary COPY in C, several times faster
than rows through psycopg (the README's Performance section has the figures). It opens its own
libpq connections, so the session uses it only where that cannot change the answer: a read
through a ``Database`` (never inside a transaction, whose uncommitted writes only its own
connection sees) whose columns all have a type ADBC reads exactly. This module owns those
connections; it must not decide which reads use them (the session does) nor convert results
(``query._columns`` does). The driver is optional (the ``arrow`` extra).
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

from orso_pg import errors
from orso_pg.errors import ConnectionLostError, ServerUnavailableError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["AdbcConnections", "adbc_available"]

_BATCH_HINT = "adbc.postgresql.batch_size_hint_bytes"
_ONE_BATCH = 2**31 - 1
# ADBC's status code for a failure of the connection itself (AdbcStatusCode.IO).
_IO = 10


def adbc_available() -> bool:
    """Whether the ADBC PostgreSQL driver and pyarrow can be imported."""
    try:
        importlib.import_module("adbc_driver_postgresql.dbapi")
        importlib.import_module("pyarrow")
    except ImportError:
        return False
    return True


class AdbcConnections:
    """A few idle ADBC connections to one server, reused across columnar reads.

    Opening a libpq connection costs milliseconds; a column read of a few rows should not pay it
    each time. Connections are handed out one per read and closed with the ``Database``.
    """

    def __init__(self, conninfo: str, keep: int = 2) -> None:
        self._conninfo = conninfo
        self._keep = keep
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def read(self, query: str, label: str) -> pa.Table:
        """Run *query* (its values already bound) and return the result as Arrow.

        An idle connection that turns out to be dead (the server restarted since it was last
        used) is dropped with the other idle ones and the read runs once more on a new one,
        as a pooled connection's read is retried.
        """
        with self._lock:
            reused = bool(self._idle)
        try:
            return self._read(query, label)
        except ConnectionLostError:
            if not reused:
                raise
            with self._lock:
                idle, self._idle = self._idle, []
            for conn in idle:
                conn.close()
            return self._read(query, label)

    def _read(self, query: str, label: str) -> pa.Table:
        dbapi = importlib.import_module("adbc_driver_postgresql.dbapi")
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            try:
                conn = dbapi.connect(self._conninfo)
            except dbapi.Error as exc:
                # The pool connected with the same DSN: the server went away since.
                msg = f"the columnar reader could not connect: {exc}"
                raise ServerUnavailableError(msg, table=label) from exc
        try:
            cur = conn.cursor()
            try:
                # One record batch for the whole result: numeric columns then become numpy
                # arrays over the batch's own buffers, with no second copy at the peak.
                cur.adbc_statement.set_options(**{_BATCH_HINT: str(_ONE_BATCH)})
                cur.execute(query)
                table = cur.fetch_arrow_table()
            finally:
                cur.close()
        except dbapi.Error as exc:
            conn.close()
            raise _adbc_error(exc, label) from exc
        with self._lock:
            if not self._closed and len(self._idle) < self._keep:
                self._idle.append(conn)
                conn = None
        if conn is not None:
            conn.close()
        return table

    def close(self) -> None:
        """Close the idle connections; later reads open none."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _adbc_error(exc: BaseException, label: str) -> Exception:
    # The same class a psycopg error of that SQLSTATE gets, so callers catch one error tree.
    sqlstate = getattr(exc, "sqlstate", None)
    cls = errors.class_for_sqlstate(sqlstate)
    if sqlstate is None and getattr(exc, "status_code", None) == _IO:
        # libpq lost the connection (the server went away): no SQLSTATE, ADBC's IO status.
        cls = errors.ConnectionLostError
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return cls(f"{first} [table {label!r}]", sqlstate=sqlstate, table=label)
