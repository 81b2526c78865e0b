"""Helpers shared by the tests: creating tables, asserting SQL, counting statements."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg

from orso_pg import Database, Migrations, migration
from orso_pg._compiler import Statement


def create_tables(db: Database, *models: type) -> None:
    """Create the tables of *models* in the test's schema."""
    Migrations.init(db, [migration(m) for m in models])


def assert_sql(stmt: Statement, text: str, params: tuple[Any, ...] | None = None) -> None:
    """Assert the text of a compiled statement and, when given, its parameters."""
    assert stmt.as_string() == text
    if params is not None:
        assert stmt.params == params


class StatementLog:
    """The statements a Database ran while a ``count_statements`` block was open."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    def __len__(self) -> int:
        return len(self.statements)

    def texts(self) -> list[str]:
        return [text for text, _ in self.statements]

    def __call__(self, text: str, params: tuple[Any, ...]) -> None:
        self.statements.append((text, params))


@contextlib.contextmanager
def count_statements(db: Database) -> Iterator[StatementLog]:
    """Record every statement *db* runs inside the block (to catch N+1 regressions)."""
    log = StatementLog()
    db.add_listener(log)
    try:
        yield log
    finally:
        db.remove_listener(log)


def assert_pool_clean(db: Database) -> None:
    """Every pooled connection is back, idle and out of pipeline mode."""
    stats = db.pool_stats()
    assert stats["pool_available"] == stats["pool_size"]
    with db.connection() as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF
