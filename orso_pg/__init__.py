"""orso_pg: a synchronous PostgreSQL ORM on psycopg 3 and attrs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orso_pg import codec
from orso_pg._model import Orso
from orso_pg._partition import ListPartitioning, PartitionInfo, RangePartitioning, partition
from orso_pg._schema import Column, ForeignKey, Index, TableMeta, column, table, table_of
from orso_pg.batch._batch import BatchOptions, UpsertResult
from orso_pg.errors import (
    CheckViolationError,
    CompressionError,
    ConfigError,
    ConnectionLostError,
    ConstraintError,
    DatabaseError,
    DataError,
    DefinitionError,
    ExclusionViolationError,
    ForeignKeyViolationError,
    LockNotAvailableError,
    LockTimeoutError,
    MigrationError,
    MissingTableError,
    NotFoundError,
    NotNullViolationError,
    OrsoError,
    PipelineAbortedError,
    PoolError,
    PoolTimeoutError,
    QueryCanceledError,
    QueryError,
    SerializationError,
    ServerUnavailableError,
    UniqueViolationError,
    ValidationError,
)
from orso_pg.migrate._history import MigrationRecord
from orso_pg.migrate._migrations import (
    MigrationAction,
    MigrationEntry,
    MigrationPlan,
    MigrationResult,
    Migrations,
    MigrationStep,
    migration,
)
from orso_pg.query._builder import JoinType, QueryBuilder, Window
from orso_pg.query._expressions import Expr, col
from orso_pg.query._filters import Aggregate, Filter, SearchFilter, Sort, SortOrder
from orso_pg.query._locks import LockStrength, RowLock
from orso_pg.query._pagination import Cursor, KeysetPage, PaginatedResult, Pagination
from orso_pg.session._database import Database, DatabaseConfig, Transaction
from orso_pg.session._held import Held
from orso_pg.session._pipeline import Pending, Pipeline
from orso_pg.session._replicas import PrimarySession, ReplicaStatus

# Everything public is re-exported here, so that `from orso_pg import X` is the one import
# path users and type checkers need; the modules behind it are an implementation detail.
__all__ = [
    "Aggregate",
    "BatchOptions",
    "CheckViolationError",
    "Column",
    "CompressionError",
    "ConfigError",
    "ConnectionLostError",
    "ConstraintError",
    "Cursor",
    "DataError",
    "Database",
    "DatabaseConfig",
    "DatabaseError",
    "DefinitionError",
    "ExclusionViolationError",
    "Expr",
    "Filter",
    "ForeignKey",
    "ForeignKeyViolationError",
    "Held",
    "Index",
    "JoinType",
    "KeysetPage",
    "ListPartitioning",
    "LockNotAvailableError",
    "LockStrength",
    "LockTimeoutError",
    "MigrationAction",
    "MigrationEntry",
    "MigrationError",
    "MigrationPlan",
    "MigrationRecord",
    "MigrationResult",
    "MigrationStep",
    "Migrations",
    "MissingTableError",
    "NotFoundError",
    "NotNullViolationError",
    "Orso",
    "OrsoError",
    "PaginatedResult",
    "Pagination",
    "PartitionInfo",
    "Pending",
    "Pipeline",
    "PipelineAbortedError",
    "PoolError",
    "PoolTimeoutError",
    "PrimarySession",
    "QueryBuilder",
    "QueryCanceledError",
    "QueryError",
    "RangePartitioning",
    "ReplicaStatus",
    "RowLock",
    "SearchFilter",
    "SerializationError",
    "ServerUnavailableError",
    "Sort",
    "SortOrder",
    "TableMeta",
    "Transaction",
    "UniqueViolationError",
    "UpsertResult",
    "ValidationError",
    "Window",
    "codec",
    "col",
    "column",
    "migration",
    "partition",
    "table",
    "table_of",
]


if TYPE_CHECKING:
    __version__: str
else:

    def __getattr__(name: str) -> str:
        # The version comes from the installed metadata, read on first use (stamina does the
        # same): importing orso_pg does not pay for importlib.metadata. Hidden from type
        # checkers, which would otherwise accept any attribute of the package.
        if name == "__version__":
            from importlib.metadata import PackageNotFoundError, version

            try:
                return version("orso_pg")
            except PackageNotFoundError:  # pragma: no cover - a source tree not installed
                return "0+unknown"
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)


def _report_public_paths() -> None:
    # Classes and functions live in private modules; tracebacks, reprs and pickles should name
    # the path users import them from (psycopg does the same).
    for name in __all__:
        obj = globals()[name]
        module = getattr(obj, "__module__", "")
        if module.startswith("orso_pg.") and "._" in module:
            obj.__module__ = __name__


_report_public_paths()
