"""Hand-written statements: the checks a raw query passes before it may run.

Owns turning a caller's ``psycopg.sql`` query and parameters into a
:class:`~orso_pg._compiler.Statement`, for ``db.fetch``, ``db.fetch_dicts`` and
``Model.from_sql``. Only :mod:`psycopg.sql` objects are taken: a plain ``str`` is refused, so
a value formatted into SQL text by accident cannot reach the server. It is pure: it never runs
the statement.

>>> from psycopg import sql
>>> raw_statement(sql.SQL("SELECT %s"), [1], "db.fetch").params
(1,)
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from orso_pg._compiler import Statement
from orso_pg.errors import QueryError
from orso_pg.query._filters import isa

__all__ = ["raw_statement"]


def raw_statement(query: object, params: object, what: str) -> Statement:
    """Return *query* with *params* as a statement; refuse anything but ``psycopg.sql``.

    Args:
        query: A :mod:`psycopg.sql` object (``sql.SQL("... %s ...")``, a ``Composed``...).
        params: The values of its ``%s`` placeholders, a sequence.
        what: The caller's name, for the error message.
    """
    if not isa(query, sql.Composable):
        msg = (
            f"{what} takes a psycopg.sql object, e.g. sql.SQL('SELECT ... WHERE x = %s'), "
            f"not {type(query).__name__}: values belong in params, names in sql.Identifier"
        )
        raise QueryError(msg, value=query)
    if params is None:
        params = ()
    if isa(params, (str, bytes)) or not isa(params, Sequence):
        msg = f"{what} params must be a sequence of values (a list or tuple), not {params!r}"
        raise QueryError(msg, value=params)
    return Statement(query, tuple(params))  # type: ignore[arg-type]
