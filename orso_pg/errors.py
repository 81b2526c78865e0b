"""The exception tree of orso_pg.

Owns every exception class the library raises and the translation of driver errors into them.
It must not import anything else from orso_pg (every other module imports it) and must not
hold connections: errors pickle, so they carry only plain values.

::

    OrsoError
    ├── DefinitionError          a bad model or column, raised when the class is decorated
    ├── ConfigError              a bad DSN, option or environment
    ├── ValidationError          a value or argument refused before any SQL runs
    ├── QueryError               a query that cannot be built (unknown column, bad filter)
    ├── NotFoundError            the row an operation needs does not exist
    ├── CompressionError         a codec frame that is corrupt, truncated, foreign or too large
    ├── MigrationError           a migration that cannot be planned or applied
    ├── PoolError                no connection could be had
    │   └── PoolTimeoutError
    └── DatabaseError            PostgreSQL refused a statement (``sqlstate`` set)
        ├── ConstraintError      class 23, integrity constraint violation
        │   ├── UniqueViolationError        23505
        │   ├── ForeignKeyViolationError    23503
        │   ├── NotNullViolationError       23502
        │   ├── CheckViolationError         23514
        │   └── ExclusionViolationError     23P01
        ├── DataError            class 22, a value PostgreSQL cannot store
        ├── MissingTableError    42P01, the table was never created (or was dropped)
        ├── SerializationError   40001 / 40P01, safe to retry the whole transaction
        ├── LockTimeoutError     55P03
        │   └── LockNotAvailableError  (the class raised: NOWAIT or lock_timeout)
        ├── QueryCanceledError   57014 (statement_timeout, cancel)
        └── ConnectionLostError  class 08 or a connection that broke mid-statement
            └── ServerUnavailableError  no answer: the server is down or went silent

Each class also subclasses the builtin whose meaning it refines where there is one, so
``except ValueError`` still catches a bad value.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "CheckViolationError",
    "CompressionError",
    "ConfigError",
    "ConnectionLostError",
    "ConstraintError",
    "DataError",
    "DatabaseError",
    "DefinitionError",
    "ExclusionViolationError",
    "ForeignKeyViolationError",
    "LockNotAvailableError",
    "LockTimeoutError",
    "MigrationError",
    "MissingTableError",
    "NotFoundError",
    "NotNullViolationError",
    "OrsoError",
    "PipelineAbortedError",
    "PoolError",
    "PoolTimeoutError",
    "QueryCanceledError",
    "QueryError",
    "SerializationError",
    "ServerUnavailableError",
    "UniqueViolationError",
    "ValidationError",
]

_UNSET: Any = object()


def _short(value: object, limit: int = 80) -> str:
    """Return a repr of *value* cut to *limit* characters, for messages."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


class OrsoError(Exception):
    """Base class of every error raised by orso_pg.

    Attributes:
        table: The table the error is about, when known.
        column: The column (model field) the error is about, when known.
        value: The offending value, when there is one (``None`` is a real value here;
            ``has_value`` tells whether one was given).
        position: For a batch: the 0-based position in the input of the row at fault.
        committed: For a batch: how many input rows are committed, where ``start=`` resumes.
    """

    __module__ = "orso_pg"
    position: int | None = None
    committed: int | None = None

    def __init__(
        self,
        message: str,
        *,
        table: str | None = None,
        column: str | None = None,
        value: object = _UNSET,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.table = table
        self.column = column
        self.has_value = value is not _UNSET
        self.value = None if value is _UNSET else value

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only context would be lost by Exception's default pickling.
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[OrsoError], message: str, state: dict[str, Any]) -> OrsoError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class DefinitionError(OrsoError, TypeError):
    """A model or column definition is invalid; raised when the class is decorated."""


class ConfigError(OrsoError, ValueError):
    """A connection string, option or environment setting is invalid."""


class ValidationError(OrsoError, ValueError):
    """A value or argument was refused before any SQL ran; nothing was written."""


class QueryError(OrsoError, ValueError):
    """A query cannot be built: an unknown column, a bad filter or an ambiguous key."""


class NotFoundError(OrsoError, LookupError):
    """The row an operation needs does not exist."""


class CompressionError(OrsoError, ValueError):
    """A codec frame is corrupt, truncated, foreign, too new or larger than allowed."""


class MigrationError(OrsoError):
    """A migration cannot be planned or applied; the schema and data are as they were."""


class PoolError(OrsoError):
    """No database connection could be obtained."""


class PoolTimeoutError(PoolError, TimeoutError):
    """No connection became free within the pool's timeout."""


class PipelineAbortedError(OrsoError):
    """An operation of a pipeline did not run because an earlier one failed.

    Attributes:
        operation: The 1-based number, within its pipeline, of the operation that failed
            first (its own handle raises that operation's error).
    """

    def __init__(self, message: str, *, operation: int, table: str | None = None) -> None:
        super().__init__(message, table=table)
        self.operation = operation


class DatabaseError(OrsoError):
    """PostgreSQL refused a statement; the driver error is kept as ``__cause__``.

    Attributes:
        sqlstate: The five-character SQLSTATE code, when the server sent one.
        constraint: The constraint name the server reported, when there is one.
        detail: The server's DETAIL line, when there is one.
    """

    sqlstates: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        constraint: str | None = None,
        detail: str | None = None,
        table: str | None = None,
        column: str | None = None,
        value: object = _UNSET,
    ) -> None:
        super().__init__(message, table=table, column=column, value=value)
        self.sqlstate = sqlstate
        self.constraint = constraint
        self.detail = detail


class ConstraintError(DatabaseError):
    """An integrity constraint was violated (SQLSTATE class 23)."""


class UniqueViolationError(ConstraintError):
    """A unique or primary key constraint was violated (23505)."""

    sqlstates = ("23505",)


class ForeignKeyViolationError(ConstraintError):
    """A foreign key constraint was violated (23503)."""

    sqlstates = ("23503",)


class NotNullViolationError(ConstraintError):
    """A NOT NULL constraint was violated (23502)."""

    sqlstates = ("23502",)


class CheckViolationError(ConstraintError):
    """A CHECK constraint was violated (23514)."""

    sqlstates = ("23514",)


class ExclusionViolationError(ConstraintError):
    """An exclusion constraint was violated (23P01)."""

    sqlstates = ("23P01",)


class DataError(DatabaseError, ValueError):
    """PostgreSQL could not store or convert a value (SQLSTATE class 22)."""


class SerializationError(DatabaseError):
    """A serialization failure or deadlock (40001, 40P01); retrying the transaction is safe."""

    sqlstates = ("40001", "40P01")


class LockTimeoutError(DatabaseError, TimeoutError):
    """A lock could not be taken within ``lock_timeout`` or at once (55P03)."""


class LockNotAvailableError(LockTimeoutError):
    """A row or table lock was not available (55P03, PostgreSQL's ``lock_not_available``).

    Raised when a ``nowait`` row lock finds a row locked by another transaction, and when
    ``lock_timeout`` expires; it is a :class:`LockTimeoutError`, the name earlier versions
    raised for this SQLSTATE, so code catching that still catches it.
    """

    sqlstates = ("55P03",)


class MissingTableError(DatabaseError, LookupError):
    """A statement names a table that does not exist (42P01): migrations have not created it."""

    sqlstates = ("42P01",)


class QueryCanceledError(DatabaseError, TimeoutError):
    """The statement was canceled, usually by ``statement_timeout`` (57014)."""

    sqlstates = ("57014",)


class ConnectionLostError(DatabaseError, ConnectionError):
    """The connection to the server broke; the outcome of an open transaction is rolled back."""


class ServerUnavailableError(ConnectionLostError):
    """No connection could be had, or a call got no reply: the server is down or went silent.

    Raised after ``Database(unavailable_timeout=...)`` while connecting keeps failing (the
    message carries libpq's reason), or when a call outlives its client-side ``deadline``
    (the connection is then closed, so an open transaction is rolled back by the server).
    """


_BY_SQLSTATE: dict[str, type[DatabaseError]] = {
    code: cls
    for cls in (
        UniqueViolationError,
        ForeignKeyViolationError,
        NotNullViolationError,
        CheckViolationError,
        ExclusionViolationError,
        SerializationError,
        LockTimeoutError,
        MissingTableError,
        LockNotAvailableError,
        QueryCanceledError,
    )
    for code in cls.sqlstates
}

_BY_CLASS: dict[str, type[DatabaseError]] = {
    "23": ConstraintError,
    "22": DataError,
    "08": ConnectionLostError,
    "57": ConnectionLostError,  # admin shutdown / crash shutdown; 57014 is handled above
}


def class_for_sqlstate(sqlstate: str | None) -> type[DatabaseError]:
    """Return the orso_pg error class for a SQLSTATE code (``DatabaseError`` if unknown)."""
    if not sqlstate:
        return DatabaseError
    found = _BY_SQLSTATE.get(sqlstate)
    if found is not None:
        return found
    return _BY_CLASS.get(sqlstate[:2], DatabaseError)


def describe_value(value: object) -> str:
    """Return a short printable form of *value* for an error message."""
    return _short(value)
