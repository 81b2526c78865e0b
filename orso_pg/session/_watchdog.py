"""Client-side deadlines: end a call whose server stopped answering.

A server that went silent (its processes stopped, a frozen VM, a firewall that drops packets
while a proxy keeps acknowledging them) leaves a client waiting for a reply for ever: the
kernel still acknowledges keepalives and the server never sees ``statement_timeout`` expire.
Owns one daemon thread that, when a call outlives its deadline, shuts the connection's socket
down (``shutdown(2)`` on a duplicate of its descriptor), so the blocked libpq call returns with
an error at once. It must not close the descriptor itself (libpq owns it and another thread may
reuse the number) nor touch a connection whose call already ended.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any

import psycopg

__all__ = ["Guard", "arm"]


class Guard:
    """One armed deadline; :meth:`disarm` it when the call returns."""

    __slots__ = ("conn", "deadline", "fired", "seconds")

    def __init__(self, conn: psycopg.Connection[Any], seconds: float) -> None:
        self.conn = conn
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.fired = False

    def disarm(self) -> bool:
        """Stop watching; return whether the deadline fired (the connection is then closed)."""
        with _cond:
            _armed.discard(self)
        if self.fired:
            # The socket is shut: make sure the pool sees a closed connection and drops it.
            with contextlib.suppress(Exception):
                self.conn.close()
        return self.fired


_cond = threading.Condition()
_armed: set[Guard] = set()
_thread: threading.Thread | None = None


def arm(conn: psycopg.Connection[Any], seconds: float) -> Guard:
    """Watch *conn* for *seconds*; after that its socket is shut and the call fails."""
    global _thread  # noqa: PLW0603 - one watchdog thread per process, started on first use
    guard = Guard(conn, seconds)
    with _cond:
        _armed.add(guard)
        if _thread is None:
            _thread = threading.Thread(target=_watch, name="orso_pg-watchdog", daemon=True)
            _thread.start()
        _cond.notify()
    return guard


def _watch() -> None:
    with _cond:
        while True:
            now = time.monotonic()
            for guard in [g for g in _armed if g.deadline <= now]:
                # Under the lock: disarm() waits for this, so a call that already returned
                # (and whose connection may be lent to someone else) is never touched.
                _armed.discard(guard)
                guard.fired = True
                _shut(guard.conn)
            wait = min((g.deadline for g in _armed), default=now + 60.0) - now
            _cond.wait(timeout=max(wait, 0.001))


def _shut(conn: psycopg.Connection[Any]) -> None:
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:
        return  # already closed
    with contextlib.suppress(OSError):
        dup = socket.socket(fileno=os.dup(fd))
        try:
            dup.shutdown(socket.SHUT_RDWR)
        finally:
            dup.close()
