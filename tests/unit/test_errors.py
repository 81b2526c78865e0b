"""The error tree: builtin parents, SQLSTATE mapping, pickling, driver error translation."""

from __future__ import annotations

import pickle

import psycopg
import psycopg_pool
import pytest

import orso_pg
from orso_pg import errors
from orso_pg._executor import translate


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.DefinitionError, TypeError),
        (errors.ConfigError, ValueError),
        (errors.ValidationError, ValueError),
        (errors.QueryError, ValueError),
        (errors.NotFoundError, LookupError),
        (errors.CompressionError, ValueError),
        (errors.PoolTimeoutError, TimeoutError),
        (errors.DataError, ValueError),
        (errors.LockTimeoutError, TimeoutError),
        (errors.ConnectionLostError, ConnectionError),
    ],
)
def test_errors_refine_builtins(cls: type[Exception], builtin: type[Exception]):
    """Each error is an OrsoError and also the builtin whose meaning it refines."""
    assert issubclass(cls, orso_pg.OrsoError)
    assert issubclass(cls, builtin)


@pytest.mark.parametrize(
    ("sqlstate", "cls"),
    [
        ("23505", errors.UniqueViolationError),
        ("23503", errors.ForeignKeyViolationError),
        ("23502", errors.NotNullViolationError),
        ("23514", errors.CheckViolationError),
        ("23P01", errors.ExclusionViolationError),
        ("23000", errors.ConstraintError),
        ("22003", errors.DataError),
        ("40001", errors.SerializationError),
        ("40P01", errors.SerializationError),
        ("55P03", errors.LockTimeoutError),
        ("57014", errors.QueryCanceledError),
        ("57P01", errors.ConnectionLostError),
        ("08006", errors.ConnectionLostError),
        ("42P01", errors.MissingTableError),
        (None, errors.DatabaseError),
    ],
)
def test_sqlstate_classes(sqlstate: str | None, cls: type[errors.DatabaseError]):
    """SQLSTATE codes map to the class callers branch on, and unknown ones to DatabaseError."""
    assert errors.class_for_sqlstate(sqlstate) is cls


def test_errors_pickle_with_their_context():
    """Errors survive pickling with table, column, value and SQLSTATE intact."""
    err = errors.UniqueViolationError(
        "dup", sqlstate="23505", constraint="c", table="t", column="email", value="x@y"
    )
    back = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert type(back) is errors.UniqueViolationError
    assert (back.message, back.sqlstate, back.constraint) == ("dup", "23505", "c")
    assert (back.table, back.column, back.value, back.has_value) == ("t", "email", "x@y", True)
    plain = errors.ValidationError("bad")
    again = pickle.loads(pickle.dumps(plain))  # noqa: S301
    assert str(again) == "bad"
    assert not again.has_value


def test_pool_errors_translate():
    """psycopg_pool's timeout and closed errors become PoolTimeoutError and PoolError."""
    assert isinstance(translate(psycopg_pool.PoolTimeout("slow")), errors.PoolTimeoutError)
    closed = translate(psycopg_pool.PoolClosed("gone"))
    assert type(closed) is errors.PoolError


def test_operational_error_without_sqlstate_is_a_lost_connection():
    """A driver OperationalError with no SQLSTATE means the connection broke."""
    err = translate(psycopg.OperationalError("server closed the connection"), table="t")
    assert isinstance(err, errors.ConnectionLostError)
    assert "server closed the connection" in str(err)
    assert err.table == "t"


def test_orso_errors_pass_through():
    """An orso_pg error handed to translate comes back as it is."""
    original = errors.NotFoundError("x")
    assert translate(original) is original


def test_every_error_is_exported():
    """Every error class is importable from orso_pg itself."""
    for name in errors.__all__:
        assert getattr(orso_pg, name) is getattr(errors, name)
