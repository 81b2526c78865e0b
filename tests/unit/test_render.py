"""Statements are rendered once per query object, in a bounded cache keyed by identity."""

from __future__ import annotations

from psycopg import sql

from orso_pg import _executor


def test_render_caches_by_identity_and_stays_bounded():
    first = sql.SQL("SELECT {}").format(sql.Identifier("a"))
    assert _executor.render(first) == b'SELECT "a"'
    assert _executor.render(first) is _executor.render(first)
    queries = [sql.SQL(f"SELECT {n}") for n in range(_executor._RENDERED_SIZE + 10)]
    assert [_executor.render(q) for q in queries] == [
        f"SELECT {n}".encode() for n in range(len(queries))
    ]
    assert len(_executor._RENDERED) <= _executor._RENDERED_SIZE
    assert _executor.render(first) == b'SELECT "a"'  # rendered again once evicted
