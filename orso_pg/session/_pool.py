"""The connection pool under :class:`~orso_pg.Database`: psycopg_pool, told about outages.

Owns :class:`Pool`, a ``psycopg_pool.ConnectionPool`` that remembers why its last connection
attempt failed (libpq's message, so a caller waiting for a connection can be told the cause)
and retries connecting at least every :data:`MAX_RECONNECT_DELAY` seconds instead of backing
off to minutes, so that it is usable again within moments of the server's return. It also keeps
psycopg_pool's log records off stderr when the application configured no logging. It must not
run statements beyond what psycopg_pool itself does, nor decide what a failure means to an
operation: :mod:`orso_pg.session._database` does.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg
import psycopg_pool
from psycopg_pool.base import AttemptWithBackoff

__all__ = ["MAX_RECONNECT_DELAY", "Outage", "Pool"]

logger = logging.getLogger("orso_pg")

#: The longest pause between two attempts to reconnect while the server is down (seconds).
MAX_RECONNECT_DELAY = 0.5

# A library logs; the application decides where records go. Without these handlers Python's
# last-resort handler would print every pool warning (one per failed reconnect) on stderr.
logging.getLogger("orso_pg").addHandler(logging.NullHandler())
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())


class _QuickBackoff(AttemptWithBackoff):
    """psycopg_pool's backoff, starting at 0.1 s and capped at :data:`MAX_RECONNECT_DELAY`."""

    INITIAL_DELAY = 0.1

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, MAX_RECONNECT_DELAY)


class Outage:
    """Since when connecting fails, and libpq's last reason (both None while it works)."""

    __slots__ = ("lock", "reason", "since")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since: float | None = None
        self.reason: str | None = None

    def failed(self, exc: BaseException) -> None:
        with self.lock:
            first = self.since is None
            if first:
                self.since = time.monotonic()
            self.reason = str(exc).strip() or type(exc).__name__
        if first:
            logger.warning("cannot connect to PostgreSQL: %s", self.reason)

    def recovered(self) -> None:
        if self.since is None:
            return
        with self.lock:
            down, self.since = self.since, None
        if down is not None:
            logger.warning("connected to PostgreSQL again after %.1f s", time.monotonic() - down)


class Pool(psycopg_pool.ConnectionPool[psycopg.Connection[Any]]):
    """A ``ConnectionPool`` that records outages and reconnects quickly after them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.outage = Outage()
        super().__init__(*args, **kwargs)

    def _connect(self, timeout: float | None = None) -> psycopg.Connection[Any]:
        try:
            conn = super()._connect(timeout)
        except Exception as exc:
            self.outage.failed(exc)
            raise
        self.outage.recovered()
        return conn

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        if attempt is None:
            attempt = _QuickBackoff(timeout=self.reconnect_timeout)
        super()._add_connection(attempt, growing=growing)
