"""The ``Orso`` base class: orso's trait operations as methods of a model.

Owns the public method surface (names and argument order from orso, ``db`` last, and a
``_with_table`` twin for each whose last argument is the table name). Every method is a thin
call into :mod:`orso_pg._operations` (single rows), :mod:`orso_pg._reads` (queries) or
:mod:`orso_pg.batch._batch` (bulk work); it must not hold logic of its own.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, Self, TypeVar, Unpack, overload

import attrs
import numpy as np
from psycopg import sql

from orso_pg import _from_sql as raw
from orso_pg import _nearest
from orso_pg import _operations as ops
from orso_pg import _partitions as parts
from orso_pg import _reads as reads
from orso_pg import _related as related
from orso_pg._partition import PartitionInfo
from orso_pg._schema import TableMeta, table_of
from orso_pg.batch import _batch as batch
from orso_pg.batch._batch import BatchOptions, UpsertResult
from orso_pg.batch._progress import ProgressOption
from orso_pg.errors import QueryError
from orso_pg.migrate import _swap as swap
from orso_pg.query._builder import QueryBuilder
from orso_pg.query._filters import Aggregate, Filter, SearchFilter, Sort
from orso_pg.query._locks import RowLock
from orso_pg.query._pagination import Cursor, KeysetPage, PaginatedResult, Pagination
from orso_pg.session._database import Database, Transaction
from orso_pg.session._held import Held
from orso_pg.session._pipeline import Pending, Pipeline
from orso_pg.session._replicas import PrimarySession

__all__ = ["Orso"]

Session = Database | Transaction | Held | PrimarySession
C = TypeVar("C")


class Orso:
    """Base class of orso_pg models: gives a ``@table`` class orso's operations.

    >>> import attrs
    >>> from orso_pg import Orso, table, column
    >>> @table("users")
    ... class User(Orso):
    ...     id: str | None = column(primary_key=True, default=None)
    ...     email: str = column(unique=True)
    >>> User.table_name()
    'users'
    """

    __slots__ = ()

    # --- metadata (orso's generated helpers) --------------------------------------------------

    @classmethod
    def orso_meta(cls) -> TableMeta:
        """Return the model's metadata."""
        return table_of(cls)

    @classmethod
    def table_name(cls) -> str:
        """Return the model's table name."""
        return table_of(cls).name

    @classmethod
    def primary_key_field(cls) -> str | None:
        """Return the primary key's field name, or None.

        Raises:
            QueryError: the key is composite; :meth:`primary_key_fields` names its columns.
        """
        meta = table_of(cls)
        if meta.composite:
            msg = (
                f"{cls.__name__} has a composite primary key ({', '.join(meta.key_names)}); "
                "use primary_key_fields()"
            )
            raise QueryError(msg, table=meta.name)
        pk = meta.primary_key
        return None if pk is None else pk.name

    @classmethod
    def primary_key_fields(cls) -> tuple[str, ...]:
        """Return the primary key's field names in key order (one for a single-column key)."""
        return table_of(cls).key_names

    @classmethod
    def field_names(cls) -> builtins.list[str]:
        """Return the column names in declaration order."""
        return list(table_of(cls).column_names)

    @classmethod
    def unique_fields(cls) -> builtins.list[str]:
        """Return the columns declared ``unique=True`` (the primary key excluded)."""
        return [c.name for c in table_of(cls).columns if c.options.unique]

    @classmethod
    def created_at_field(cls) -> str | None:
        """Return the ``created_at`` column's name, or None."""
        col = table_of(cls).created_at
        return None if col is None else col.name

    @classmethod
    def updated_at_field(cls) -> str | None:
        """Return the ``updated_at`` column's name, or None."""
        col = table_of(cls).updated_at
        return None if col is None else col.name

    def get_primary_key(self) -> object:
        """Return this instance's primary key value (None before insert).

        A composite key is a tuple of values in key order, e.g. ``("BTC", ts)``: the value
        ``find_by_id`` takes.
        """
        meta = table_of(type(self))
        return ops.key_value(meta, self) if meta.key else None

    # --- single rows --------------------------------------------------------------------------

    @overload
    def insert(self, db: Pipeline) -> Pending[Self]: ...

    @overload
    def insert(self, db: Session) -> Self: ...

    def insert(self, db: Session | Pipeline) -> Self | Pending[Self]:
        """Insert this instance; the generated key and timestamps are set on it."""
        return ops.insert(self, db)

    @overload
    def insert_with_table(self, db: Pipeline, table_name: str) -> Pending[Self]: ...

    @overload
    def insert_with_table(self, db: Session, table_name: str) -> Self: ...

    def insert_with_table(self, db: Session | Pipeline, table_name: str) -> Self | Pending[Self]:
        """:meth:`insert` into *table_name*."""
        return ops.insert(self, db, table_name)

    @overload
    def update(self, db: Pipeline) -> Pending[Self]: ...

    @overload
    def update(self, db: Session) -> Self: ...

    def update(self, db: Session | Pipeline) -> Self | Pending[Self]:
        """Write this instance to its row; ``updated_at`` is set. Raises ``NotFoundError``."""
        return ops.update(self, db)

    @overload
    def update_with_table(self, db: Pipeline, table_name: str) -> Pending[Self]: ...

    @overload
    def update_with_table(self, db: Session, table_name: str) -> Self: ...

    def update_with_table(self, db: Session | Pipeline, table_name: str) -> Self | Pending[Self]:
        """:meth:`update` in *table_name*."""
        return ops.update(self, db, table_name)

    @overload
    def delete(self, db: Pipeline) -> Pending[bool]: ...

    @overload
    def delete(self, db: Session) -> bool: ...

    def delete(self, db: Session | Pipeline) -> bool | Pending[bool]:
        """Delete this instance's row; return whether there was one."""
        return ops.delete(self, db)

    @overload
    def delete_with_table(self, db: Pipeline, table_name: str) -> Pending[bool]: ...

    @overload
    def delete_with_table(self, db: Session, table_name: str) -> bool: ...

    def delete_with_table(self, db: Session | Pipeline, table_name: str) -> bool | Pending[bool]:
        """:meth:`delete` from *table_name*."""
        return ops.delete(self, db, table_name)

    def delete_cascade(self, db: Session) -> bool:
        """Delete this row and every row referencing it, recursively, in one transaction."""
        return ops.delete_cascade(self, db)

    def delete_cascade_with_table(self, db: Session, table_name: str) -> bool:
        """:meth:`delete_cascade` from *table_name*."""
        return ops.delete_cascade(self, db, table_name)

    @overload
    def insert_or_update(self, db: Pipeline) -> Pending[Self]: ...

    @overload
    def insert_or_update(self, db: Session) -> Self: ...

    def insert_or_update(self, db: Session | Pipeline) -> Self | Pending[Self]:
        """Insert, or update the row with the same primary key: one statement."""
        return ops.insert_or_update(self, db)

    @overload
    def insert_or_update_with_table(self, db: Pipeline, table_name: str) -> Pending[Self]: ...

    @overload
    def insert_or_update_with_table(self, db: Session, table_name: str) -> Self: ...

    def insert_or_update_with_table(
        self, db: Session | Pipeline, table_name: str
    ) -> Self | Pending[Self]:
        """:meth:`insert_or_update` in *table_name*."""
        return ops.insert_or_update(self, db, table_name)

    @overload
    def upsert(self, db: Pipeline) -> Pending[Self]: ...

    @overload
    def upsert(self, db: Session) -> Self: ...

    def upsert(self, db: Session | Pipeline) -> Self | Pending[Self]:
        """Insert, or update the row with the same unique key; the stored row comes back."""
        return ops.upsert(self, db)

    @overload
    def upsert_with_table(self, db: Pipeline, table_name: str) -> Pending[Self]: ...

    @overload
    def upsert_with_table(self, db: Session, table_name: str) -> Self: ...

    def upsert_with_table(self, db: Session | Pipeline, table_name: str) -> Self | Pending[Self]:
        """:meth:`upsert` in *table_name*."""
        return ops.upsert(self, db, table_name)

    @overload
    @classmethod
    def find_by_id(
        cls, id: object, db: Pipeline, *, lock: RowLock | None = None
    ) -> Pending[Self | None]: ...

    @overload
    @classmethod
    def find_by_id(cls, id: object, db: Session, *, lock: RowLock | None = None) -> Self | None: ...

    @classmethod
    def find_by_id(
        cls, id: object, db: Session | Pipeline, *, lock: RowLock | None = None
    ) -> Self | Pending[Self | None] | None:
        """Return the row whose primary key is *id* (a tuple for a composite key), or None.

        *lock* locks the row (inside a transaction).
        """
        return ops.find_by_id(cls, id, db, lock=lock)

    @overload
    @classmethod
    def find_by_id_with_table(
        cls, id: object, db: Pipeline, table_name: str, *, lock: RowLock | None = None
    ) -> Pending[Self | None]: ...

    @overload
    @classmethod
    def find_by_id_with_table(
        cls, id: object, db: Session, table_name: str, *, lock: RowLock | None = None
    ) -> Self | None: ...

    @classmethod
    def find_by_id_with_table(
        cls, id: object, db: Session | Pipeline, table_name: str, *, lock: RowLock | None = None
    ) -> Self | Pending[Self | None] | None:
        """:meth:`find_by_id` in *table_name*."""
        return ops.find_by_id(cls, id, db, table_name, lock=lock)

    @overload
    @classmethod
    def find_all(cls, db: Pipeline) -> Pending[builtins.list[Self]]: ...

    @overload
    @classmethod
    def find_all(cls, db: Session) -> builtins.list[Self]: ...

    @classmethod
    def find_all(cls, db: Session | Pipeline) -> builtins.list[Self] | Pending[builtins.list[Self]]:
        """Return every row (in primary key order)."""
        return ops.find_all(cls, db)

    @overload
    @classmethod
    def find_all_with_table(cls, db: Pipeline, table_name: str) -> Pending[builtins.list[Self]]: ...

    @overload
    @classmethod
    def find_all_with_table(cls, db: Session, table_name: str) -> builtins.list[Self]: ...

    @classmethod
    def find_all_with_table(
        cls, db: Session | Pipeline, table_name: str
    ) -> builtins.list[Self] | Pending[builtins.list[Self]]:
        """:meth:`find_all` in *table_name*."""
        return ops.find_all(cls, db, table_name)

    @overload
    @classmethod
    def count(cls, db: Pipeline) -> Pending[int]: ...

    @overload
    @classmethod
    def count(cls, db: Session) -> int: ...

    @classmethod
    def count(cls, db: Session | Pipeline) -> int | Pending[int]:
        """Return the number of rows."""
        return ops.count(cls, db)

    @overload
    @classmethod
    def count_with_table(cls, db: Pipeline, table_name: str) -> Pending[int]: ...

    @overload
    @classmethod
    def count_with_table(cls, db: Session, table_name: str) -> int: ...

    @classmethod
    def count_with_table(cls, db: Session | Pipeline, table_name: str) -> int | Pending[int]:
        """:meth:`count` in *table_name*."""
        return ops.count(cls, db, table_name)

    @overload
    @classmethod
    def exists(cls, db: Pipeline) -> Pending[bool]: ...

    @overload
    @classmethod
    def exists(cls, db: Session) -> bool: ...

    @classmethod
    def exists(cls, db: Session | Pipeline) -> bool | Pending[bool]:
        """Return whether the table has any row (stops at the first)."""
        return ops.exists(cls, db)

    @overload
    @classmethod
    def exists_with_table(cls, db: Pipeline, table_name: str) -> Pending[bool]: ...

    @overload
    @classmethod
    def exists_with_table(cls, db: Session, table_name: str) -> bool: ...

    @classmethod
    def exists_with_table(cls, db: Session | Pipeline, table_name: str) -> bool | Pending[bool]:
        """:meth:`exists` in *table_name*."""
        return ops.exists(cls, db, table_name)

    # --- queries ------------------------------------------------------------------------------

    @overload
    @classmethod
    def find_where(
        cls, filter: Filter, db: Pipeline, *, lock: RowLock | None = None
    ) -> Pending[builtins.list[Self]]: ...

    @overload
    @classmethod
    def find_where(
        cls, filter: Filter, db: Session, *, lock: RowLock | None = None
    ) -> builtins.list[Self]: ...

    @classmethod
    def find_where(
        cls, filter: Filter, db: Session | Pipeline, *, lock: RowLock | None = None
    ) -> builtins.list[Self] | Pending[builtins.list[Self]]:
        """Return every row matching *filter* (in no particular order); *lock* locks them."""
        return reads.find_where(cls, filter, db, lock=lock)

    @overload
    @classmethod
    def find_where_with_table(
        cls, filter: Filter, db: Pipeline, table_name: str, *, lock: RowLock | None = None
    ) -> Pending[builtins.list[Self]]: ...

    @overload
    @classmethod
    def find_where_with_table(
        cls, filter: Filter, db: Session, table_name: str, *, lock: RowLock | None = None
    ) -> builtins.list[Self]: ...

    @classmethod
    def find_where_with_table(
        cls, filter: Filter, db: Session | Pipeline, table_name: str, *, lock: RowLock | None = None
    ) -> builtins.list[Self] | Pending[builtins.list[Self]]:
        """:meth:`find_where` in *table_name*."""
        return reads.find_where(cls, filter, db, table_name, lock=lock)

    # Columnar reads: the rows of a filter as arrays, Arrow or pandas, and exports; each builds
    # the same QueryBuilder a user would and lets it run.

    @classmethod
    def find_where_arrays(
        cls,
        filter: Filter | None,
        db: Session,
        *,
        columns: Sequence[str] | None = None,
        sorts: Sequence[Sort] = (),
    ) -> dict[str, np.ndarray]:
        """Return the rows matching *filter* as one numpy array per column.

        See :meth:`QueryBuilder.fetch_arrays` for the dtypes; *columns* picks and orders the
        columns (default: all), *sorts* orders the rows.
        """
        return reads.columns_query(cls, filter, columns, sorts).fetch_arrays(db)

    @classmethod
    def find_where_arrow(
        cls,
        filter: Filter | None,
        db: Session,
        *,
        columns: Sequence[str] | None = None,
        sorts: Sequence[Sort] = (),
    ) -> Any:
        """:meth:`find_where_arrays` as a ``pyarrow.Table`` (the ``arrow`` extra)."""
        return reads.columns_query(cls, filter, columns, sorts).fetch_arrow(db)

    @classmethod
    def find_where_df(
        cls,
        filter: Filter | None,
        db: Session,
        *,
        columns: Sequence[str] | None = None,
        sorts: Sequence[Sort] = (),
    ) -> Any:
        """:meth:`find_where_arrays` as a pandas ``DataFrame`` (the ``pandas`` extra)."""
        return reads.columns_query(cls, filter, columns, sorts).fetch_df(db)

    @classmethod
    def copy_out(
        cls,
        target: object,
        db: Session,
        *,
        filter: Filter | None = None,
        columns: Sequence[str] | None = None,
        format: str = "csv",
    ) -> int:
        """Export the rows matching *filter* to a path or binary file; return the row count.

        ``format="csv"`` writes a header line; ``"binary"`` is PostgreSQL's COPY format. See
        :meth:`QueryBuilder.copy_out`.
        """
        return reads.columns_query(cls, filter, columns, ()).copy_out(target, db, format=format)

    @overload
    @classmethod
    def find_one(
        cls, filter: Filter, db: Pipeline, *, lock: RowLock | None = None
    ) -> Pending[Self | None]: ...

    @overload
    @classmethod
    def find_one(
        cls, filter: Filter, db: Session, *, lock: RowLock | None = None
    ) -> Self | None: ...

    @classmethod
    def find_one(
        cls, filter: Filter, db: Session | Pipeline, *, lock: RowLock | None = None
    ) -> Self | Pending[Self | None] | None:
        """Return the matching row with the lowest primary key, or None; *lock* locks it."""
        return reads.find_one(cls, filter, db, lock=lock)

    @overload
    @classmethod
    def find_one_with_table(
        cls, filter: Filter, db: Pipeline, table_name: str, *, lock: RowLock | None = None
    ) -> Pending[Self | None]: ...

    @overload
    @classmethod
    def find_one_with_table(
        cls, filter: Filter, db: Session, table_name: str, *, lock: RowLock | None = None
    ) -> Self | None: ...

    @classmethod
    def find_one_with_table(
        cls, filter: Filter, db: Session | Pipeline, table_name: str, *, lock: RowLock | None = None
    ) -> Self | Pending[Self | None] | None:
        """:meth:`find_one` in *table_name*."""
        return reads.find_one(cls, filter, db, table_name, lock=lock)

    @overload
    @classmethod
    def find_latest(cls, db: Pipeline) -> Pending[Self | None]: ...

    @overload
    @classmethod
    def find_latest(cls, db: Session) -> Self | None: ...

    @classmethod
    def find_latest(cls, db: Session | Pipeline) -> Self | Pending[Self | None] | None:
        """Return the most recently created row (by the ``created_at`` column), or None."""
        return reads.find_first(cls, None, [reads.timestamp_sort(table_of(cls), latest=True)], db)

    @overload
    @classmethod
    def find_latest_with_table(cls, db: Pipeline, table_name: str) -> Pending[Self | None]: ...

    @overload
    @classmethod
    def find_latest_with_table(cls, db: Session, table_name: str) -> Self | None: ...

    @classmethod
    def find_latest_with_table(
        cls, db: Session | Pipeline, table_name: str
    ) -> Self | Pending[Self | None] | None:
        """:meth:`find_latest` in *table_name*."""
        sort = reads.timestamp_sort(table_of(cls), latest=True)
        return reads.find_first(cls, None, [sort], db, table_name)

    @overload
    @classmethod
    def find_latest_filter(cls, filter: Filter, db: Pipeline) -> Pending[Self | None]: ...

    @overload
    @classmethod
    def find_latest_filter(cls, filter: Filter, db: Session) -> Self | None: ...

    @classmethod
    def find_latest_filter(
        cls, filter: Filter, db: Session | Pipeline
    ) -> Self | Pending[Self | None] | None:
        """Return the most recently created row matching *filter*, or None."""
        sort = reads.timestamp_sort(table_of(cls), latest=True)
        return reads.find_first(cls, filter, [sort], db)

    @overload
    @classmethod
    def find_latest_filter_with_table(
        cls, filter: Filter, db: Pipeline, table_name: str
    ) -> Pending[Self | None]: ...

    @overload
    @classmethod
    def find_latest_filter_with_table(
        cls, filter: Filter, db: Session, table_name: str
    ) -> Self | None: ...

    @classmethod
    def find_latest_filter_with_table(
        cls, filter: Filter, db: Session | Pipeline, table_name: str
    ) -> Self | Pending[Self | None] | None:
        """:meth:`find_latest_filter` in *table_name*."""
        sort = reads.timestamp_sort(table_of(cls), latest=True)
        return reads.find_first(cls, filter, [sort], db, table_name)

    @overload
    @classmethod
    def find_first_filter(cls, filter: Filter, db: Pipeline) -> Pending[Self | None]: ...

    @overload
    @classmethod
    def find_first_filter(cls, filter: Filter, db: Session) -> Self | None: ...

    @classmethod
    def find_first_filter(
        cls, filter: Filter, db: Session | Pipeline
    ) -> Self | Pending[Self | None] | None:
        """Return the earliest created row matching *filter*, or None."""
        sort = reads.timestamp_sort(table_of(cls), latest=False)
        return reads.find_first(cls, filter, [sort], db)

    @overload
    @classmethod
    def find_first_filter_with_table(
        cls, filter: Filter, db: Pipeline, table_name: str
    ) -> Pending[Self | None]: ...

    @overload
    @classmethod
    def find_first_filter_with_table(
        cls, filter: Filter, db: Session, table_name: str
    ) -> Self | None: ...

    @classmethod
    def find_first_filter_with_table(
        cls, filter: Filter, db: Session | Pipeline, table_name: str
    ) -> Self | Pending[Self | None] | None:
        """:meth:`find_first_filter` in *table_name*."""
        sort = reads.timestamp_sort(table_of(cls), latest=False)
        return reads.find_first(cls, filter, [sort], db, table_name)

    @overload
    @classmethod
    def exists_filter(cls, filter: Filter, db: Pipeline) -> Pending[bool]: ...

    @overload
    @classmethod
    def exists_filter(cls, filter: Filter, db: Session) -> bool: ...

    @classmethod
    def exists_filter(cls, filter: Filter, db: Session | Pipeline) -> bool | Pending[bool]:
        """Return whether any row matches *filter* (stops at the first)."""
        return reads.exists_filter(cls, filter, db)

    @overload
    @classmethod
    def exists_filter_with_table(
        cls, filter: Filter, db: Pipeline, table_name: str
    ) -> Pending[bool]: ...

    @overload
    @classmethod
    def exists_filter_with_table(cls, filter: Filter, db: Session, table_name: str) -> bool: ...

    @classmethod
    def exists_filter_with_table(
        cls, filter: Filter, db: Session | Pipeline, table_name: str
    ) -> bool | Pending[bool]:
        """:meth:`exists_filter` in *table_name*."""
        return reads.exists_filter(cls, filter, db, table_name)

    @overload
    @classmethod
    def find_by_field(
        cls, field: str, value: object, db: Pipeline
    ) -> Pending[builtins.list[Self]]: ...

    @overload
    @classmethod
    def find_by_field(cls, field: str, value: object, db: Session) -> builtins.list[Self]: ...

    @classmethod
    def find_by_field(
        cls, field: str, value: object, db: Session | Pipeline
    ) -> builtins.list[Self] | Pending[builtins.list[Self]]:
        """Return the rows whose *field* equals *value* (None matches NULL)."""
        return reads.find_by_field(cls, field, value, db)

    @overload
    @classmethod
    def find_by_field_with_table(
        cls, field: str, value: object, db: Pipeline, table_name: str
    ) -> Pending[builtins.list[Self]]: ...

    @overload
    @classmethod
    def find_by_field_with_table(
        cls, field: str, value: object, db: Session, table_name: str
    ) -> builtins.list[Self]: ...

    @classmethod
    def find_by_field_with_table(
        cls, field: str, value: object, db: Session | Pipeline, table_name: str
    ) -> builtins.list[Self] | Pending[builtins.list[Self]]:
        """:meth:`find_by_field` in *table_name*."""
        return reads.find_by_field(cls, field, value, db, table_name)

    @overload
    @classmethod
    def find_latest_by_field(
        cls, field: str, value: object, db: Pipeline
    ) -> Pending[Self | None]: ...

    @overload
    @classmethod
    def find_latest_by_field(cls, field: str, value: object, db: Session) -> Self | None: ...

    @classmethod
    def find_latest_by_field(
        cls, field: str, value: object, db: Session | Pipeline
    ) -> Self | Pending[Self | None] | None:
        """Return the most recently created row whose *field* equals *value*, or None."""
        sort = reads.timestamp_sort(table_of(cls), latest=True)
        return reads.find_first(cls, Filter.eq(field, value), [sort], db)

    @overload
    @classmethod
    def find_latest_by_field_with_table(
        cls, field: str, value: object, db: Pipeline, table_name: str
    ) -> Pending[Self | None]: ...

    @overload
    @classmethod
    def find_latest_by_field_with_table(
        cls, field: str, value: object, db: Session, table_name: str
    ) -> Self | None: ...

    @classmethod
    def find_latest_by_field_with_table(
        cls, field: str, value: object, db: Session | Pipeline, table_name: str
    ) -> Self | Pending[Self | None] | None:
        """:meth:`find_latest_by_field` in *table_name*."""
        sort = reads.timestamp_sort(table_of(cls), latest=True)
        return reads.find_first(cls, Filter.eq(field, value), [sort], db, table_name)

    @overload
    @classmethod
    def find_first_by_field(
        cls, field: str, value: object, db: Pipeline
    ) -> Pending[Self | None]: ...

    @overload
    @classmethod
    def find_first_by_field(cls, field: str, value: object, db: Session) -> Self | None: ...

    @classmethod
    def find_first_by_field(
        cls, field: str, value: object, db: Session | Pipeline
    ) -> Self | Pending[Self | None] | None:
        """Return the earliest created row whose *field* equals *value*, or None."""
        sort = reads.timestamp_sort(table_of(cls), latest=False)
        return reads.find_first(cls, Filter.eq(field, value), [sort], db)

    @overload
    @classmethod
    def find_first_by_field_with_table(
        cls, field: str, value: object, db: Pipeline, table_name: str
    ) -> Pending[Self | None]: ...

    @overload
    @classmethod
    def find_first_by_field_with_table(
        cls, field: str, value: object, db: Session, table_name: str
    ) -> Self | None: ...

    @classmethod
    def find_first_by_field_with_table(
        cls, field: str, value: object, db: Session | Pipeline, table_name: str
    ) -> Self | Pending[Self | None] | None:
        """:meth:`find_first_by_field` in *table_name*."""
        sort = reads.timestamp_sort(table_of(cls), latest=False)
        return reads.find_first(cls, Filter.eq(field, value), [sort], db, table_name)

    @classmethod
    def find_by_ids(cls, ids: Iterable[object], db: Session) -> builtins.list[Self]:
        """Return the rows with these primary keys (tuples if composite), in one round trip."""
        return reads.find_by_ids(cls, ids, db)

    @classmethod
    def find_by_ids_with_table(
        cls, ids: Iterable[object], db: Session, table_name: str
    ) -> builtins.list[Self]:
        """:meth:`find_by_ids` in *table_name*."""
        return reads.find_by_ids(cls, ids, db, table_name)

    @overload
    @classmethod
    def find_by_field_in(
        cls, field: str, values: Iterable[object], db: Pipeline
    ) -> Pending[builtins.list[Self]]: ...

    @overload
    @classmethod
    def find_by_field_in(
        cls, field: str, values: Iterable[object], db: Session
    ) -> builtins.list[Self]: ...

    @classmethod
    def find_by_field_in(
        cls, field: str, values: Iterable[object], db: Session | Pipeline
    ) -> builtins.list[Self] | Pending[builtins.list[Self]]:
        """Return the rows whose *field* is one of *values* (empty matches nothing)."""
        return reads.find_by_field_in(cls, field, values, db)

    @overload
    @classmethod
    def find_by_field_in_with_table(
        cls, field: str, values: Iterable[object], db: Pipeline, table_name: str
    ) -> Pending[builtins.list[Self]]: ...

    @overload
    @classmethod
    def find_by_field_in_with_table(
        cls, field: str, values: Iterable[object], db: Session, table_name: str
    ) -> builtins.list[Self]: ...

    @classmethod
    def find_by_field_in_with_table(
        cls, field: str, values: Iterable[object], db: Session | Pipeline, table_name: str
    ) -> builtins.list[Self] | Pending[builtins.list[Self]]:
        """:meth:`find_by_field_in` in *table_name*."""
        return reads.find_by_field_in(cls, field, values, db, table_name)

    @overload
    @classmethod
    def count_where(cls, filter: Filter, db: Pipeline) -> Pending[int]: ...

    @overload
    @classmethod
    def count_where(cls, filter: Filter, db: Session) -> int: ...

    @classmethod
    def count_where(cls, filter: Filter, db: Session | Pipeline) -> int | Pending[int]:
        """Return how many rows match *filter*."""
        return reads.count_where(cls, filter, db)

    @overload
    @classmethod
    def count_where_with_table(
        cls, filter: Filter, db: Pipeline, table_name: str
    ) -> Pending[int]: ...

    @overload
    @classmethod
    def count_where_with_table(cls, filter: Filter, db: Session, table_name: str) -> int: ...

    @classmethod
    def count_where_with_table(
        cls, filter: Filter, db: Session | Pipeline, table_name: str
    ) -> int | Pending[int]:
        """:meth:`count_where` in *table_name*."""
        return reads.count_where(cls, filter, db, table_name)

    @overload
    @classmethod
    def delete_where(cls, filter: Filter, db: Pipeline) -> Pending[int]: ...

    @overload
    @classmethod
    def delete_where(cls, filter: Filter, db: Session) -> int: ...

    @classmethod
    def delete_where(cls, filter: Filter, db: Session | Pipeline) -> int | Pending[int]:
        """Delete the rows matching *filter*; return how many."""
        return reads.delete_where(cls, filter, db)

    @overload
    @classmethod
    def delete_where_with_table(
        cls, filter: Filter, db: Pipeline, table_name: str
    ) -> Pending[int]: ...

    @overload
    @classmethod
    def delete_where_with_table(cls, filter: Filter, db: Session, table_name: str) -> int: ...

    @classmethod
    def delete_where_with_table(
        cls, filter: Filter, db: Session | Pipeline, table_name: str
    ) -> int | Pending[int]:
        """:meth:`delete_where` in *table_name*."""
        return reads.delete_where(cls, filter, db, table_name)

    @overload
    @classmethod
    def update_where(
        cls, filter: Filter, values: Mapping[str, object], db: Pipeline
    ) -> Pending[int]: ...

    @overload
    @classmethod
    def update_where(cls, filter: Filter, values: Mapping[str, object], db: Session) -> int: ...

    @classmethod
    def update_where(
        cls, filter: Filter, values: Mapping[str, object], db: Session | Pipeline
    ) -> int | Pending[int]:
        """Set *values* (column to value) on every row matching *filter*; return how many."""
        return reads.update_where(cls, filter, values, db)

    @overload
    @classmethod
    def update_where_with_table(
        cls, filter: Filter, values: Mapping[str, object], db: Pipeline, table_name: str
    ) -> Pending[int]: ...

    @overload
    @classmethod
    def update_where_with_table(
        cls, filter: Filter, values: Mapping[str, object], db: Session, table_name: str
    ) -> int: ...

    @classmethod
    def update_where_with_table(
        cls, filter: Filter, values: Mapping[str, object], db: Session | Pipeline, table_name: str
    ) -> int | Pending[int]:
        """:meth:`update_where` in *table_name*."""
        return reads.update_where(cls, filter, values, db, table_name)

    @classmethod
    def find_paginated(cls, pagination: Pagination, db: Session) -> PaginatedResult[Self]:
        """Return one page of every row (primary key order) and the total."""
        return reads.find_page(cls, None, None, pagination, db)

    @classmethod
    def find_paginated_with_table(
        cls, pagination: Pagination, db: Session, table_name: str
    ) -> PaginatedResult[Self]:
        """:meth:`find_paginated` in *table_name*."""
        return reads.find_page(cls, None, None, pagination, db, table_name)

    @classmethod
    def find_where_paginated(
        cls, filter: Filter, pagination: Pagination, db: Session
    ) -> PaginatedResult[Self]:
        """Return one page of the rows matching *filter* and their total."""
        return reads.find_page(cls, filter, None, pagination, db)

    @classmethod
    def find_where_paginated_with_table(
        cls, filter: Filter, pagination: Pagination, db: Session, table_name: str
    ) -> PaginatedResult[Self]:
        """:meth:`find_where_paginated` in *table_name*."""
        return reads.find_page(cls, filter, None, pagination, db, table_name)

    @classmethod
    def search(
        cls, search_filter: SearchFilter, pagination: Pagination | None, db: Session
    ) -> PaginatedResult[Self]:
        """Return one page of rows matching a text search (case-insensitive by default)."""
        return reads.search(cls, search_filter, pagination, db)

    @classmethod
    def search_with_table(
        cls,
        search_filter: SearchFilter,
        pagination: Pagination | None,
        db: Session,
        table_name: str,
    ) -> PaginatedResult[Self]:
        """:meth:`search` in *table_name*."""
        return reads.search(cls, search_filter, pagination, db, table_name)

    @classmethod
    def list_where(
        cls,
        filter: Filter,
        sorts: Sequence[Sort] | None,
        pagination: Pagination | None,
        db: Session,
    ) -> PaginatedResult[Self]:
        """Return one sorted page of the rows matching *filter* (page 1 of 20 by default)."""
        return reads.find_page(cls, filter, sorts, pagination, db)

    @classmethod
    def list_where_with_table(
        cls,
        filter: Filter,
        sorts: Sequence[Sort] | None,
        pagination: Pagination | None,
        db: Session,
        table_name: str,
    ) -> PaginatedResult[Self]:
        """:meth:`list_where` in *table_name*."""
        return reads.find_page(cls, filter, sorts, pagination, db, table_name)

    @classmethod
    def find_keyset(
        cls,
        filter: Filter | None,
        sorts: Sequence[Sort],
        db: Session,
        *,
        after: Cursor | None = None,
        limit: int = 100,
        table_name: str | None = None,
    ) -> KeysetPage[Self]:
        """Return the page after *after* in *sorts* order (keyset pagination, no offsets)."""
        return reads.find_keyset(
            cls, filter, sorts, db, after=after, limit=limit, table_name=table_name
        )

    @classmethod
    def stream_where(
        cls,
        filter: Filter | None,
        db: Session,
        *,
        sorts: Sequence[Sort] = (),
        batch_size: int = 2000,
        table_name: str | None = None,
        timeout: float | None = None,
    ) -> Iterator[Self]:
        """Yield the matching rows from a server-side cursor: flat memory for any size.

        *timeout* (seconds) bounds each round trip, the query and then each page: the server
        cancels a longer one (:class:`QueryCanceledError`), and the client gives up on a
        silent server 5 s later.
        """
        return reads.stream(
            cls, filter, sorts, db, batch_size=batch_size, table_name=table_name, timeout=timeout
        )

    @classmethod
    def nearest(
        cls,
        field: str,
        vector: Any,
        k: int,
        db: Session,
        *,
        distance: str | None = None,
        filter: Filter | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        table_name: str | None = None,
    ) -> builtins.list[tuple[Self, float]]:
        """Return the *k* rows nearest to *vector* in the vector column *field*, closest first.

        Each item is ``(instance, distance)``. The distance is the column's declared one
        (``column(vector=N, distance=...)``, default ``"l2"``) so that its index serves the
        query, unless *distance* names another; ``"inner_product"`` gives pgvector's negative
        inner product. *filter* restricts the candidates first (``WHERE``). *ef_search*
        (HNSW) and *probes* (IVFFlat) apply to this query only, set locally in its own
        transaction.
        """
        return _nearest.nearest(
            cls,
            field,
            vector,
            k,
            db,
            distance=distance,
            filter=filter,
            ef_search=ef_search,
            probes=probes,
            table_name=table_name,
        )

    @classmethod
    def query(cls, builder: QueryBuilder, db: Session) -> builtins.list[Self]:
        """Run a :class:`QueryBuilder` on this model and return instances."""
        return reads.query(cls, builder, db)

    @classmethod
    def query_with_table(
        cls, builder: QueryBuilder, db: Session, table_name: str
    ) -> builtins.list[Self]:
        """:meth:`query` reading *table_name* instead of the builder's table."""
        return reads.query(cls, attrs.evolve(builder, table_name=table_name), db)

    @classmethod
    def query_paginated(
        cls, builder: QueryBuilder, pagination: Pagination, db: Session
    ) -> PaginatedResult[Self]:
        """Run one page of a :class:`QueryBuilder` with the total of the whole query."""
        return reads.query_paginated(cls, builder, pagination, db)

    @classmethod
    def query_paginated_with_table(
        cls, builder: QueryBuilder, pagination: Pagination, db: Session, table_name: str
    ) -> PaginatedResult[Self]:
        """:meth:`query_paginated` reading *table_name*."""
        return reads.query_paginated(
            cls, attrs.evolve(builder, table_name=table_name), pagination, db
        )

    @overload
    @classmethod
    def aggregate(
        cls, aggregate: Aggregate, column: str, filter: Filter | None, db: Pipeline
    ) -> Pending[Any]: ...

    @overload
    @classmethod
    def aggregate(
        cls, aggregate: Aggregate, column: str, filter: Filter | None, db: Session
    ) -> Any: ...

    @classmethod
    def aggregate(
        cls, aggregate: Aggregate, column: str, filter: Filter | None, db: Session | Pipeline
    ) -> Any | Pending[Any]:
        """Return ``aggregate(column)`` over the matching rows: a Python value or None."""
        return reads.aggregate(cls, aggregate, column, filter, db)

    @overload
    @classmethod
    def aggregate_with_table(
        cls,
        aggregate: Aggregate,
        column: str,
        filter: Filter | None,
        db: Pipeline,
        table_name: str,
    ) -> Pending[Any]: ...

    @overload
    @classmethod
    def aggregate_with_table(
        cls,
        aggregate: Aggregate,
        column: str,
        filter: Filter | None,
        db: Session,
        table_name: str,
    ) -> Any: ...

    @classmethod
    def aggregate_with_table(
        cls,
        aggregate: Aggregate,
        column: str,
        filter: Filter | None,
        db: Session | Pipeline,
        table_name: str,
    ) -> Any | Pending[Any]:
        """:meth:`aggregate` in *table_name*."""
        return reads.aggregate(cls, aggregate, column, filter, db, table_name)

    # --- related rows and hand-written SQL -----------------------------------------------------

    @overload
    @classmethod
    def load_related(
        cls, instances: Iterable[Self], target: str, db: Session
    ) -> dict[Any, Any | None]: ...

    @overload
    @classmethod
    def load_related(
        cls, instances: Iterable[Self], target: type[C], db: Session, *, field: str | None = None
    ) -> dict[Any, builtins.list[C]]: ...

    @classmethod
    def load_related(
        cls,
        instances: Iterable[Self],
        target: str | type,
        db: Session,
        *,
        field: str | None = None,
    ) -> dict[Any, Any]:
        """Load the related rows of *instances* in one statement; key them by primary key.

        With a field name holding a ``ref=``: ``{key: parent or None}``. With a model class
        whose rows reference this one: ``{key: [children]}`` (``field=`` picks the reference
        when it has several). Nothing is loaded lazily: this is the one way to follow them.
        """
        return related.load_related(cls, instances, target, db, field=field)

    @classmethod
    def from_sql(
        cls, query: sql.Composable, params: Sequence[Any], db: Session
    ) -> builtins.list[Self]:
        """Run a hand-written ``psycopg.sql`` query returning this model's columns; load them.

        A missing, extra or mistyped column is a ``QueryError`` naming it.
        """
        return raw.from_sql(cls, query, params, db)

    # The method below shadows the builtin `list` inside this class body: annotations after it
    # must say `builtins.list`.

    @classmethod
    def list(
        cls, sorts: Sequence[Sort] | None, pagination: Pagination | None, db: Session
    ) -> PaginatedResult[Self]:
        """Return one sorted page of every row (page 1 of 20 by default, as orso)."""
        return reads.find_page(cls, None, sorts, pagination, db)

    @classmethod
    def list_with_table(
        cls,
        sorts: Sequence[Sort] | None,
        pagination: Pagination | None,
        db: Session,
        table_name: str,
    ) -> PaginatedResult[Self]:
        """:meth:`list` in *table_name*."""
        return reads.find_page(cls, None, sorts, pagination, db, table_name)

    # --- batch operations ---------------------------------------------------------------------
    # Thin calls into orso_pg.batch; every option (chunk_size, chunked, start, progress) is the
    # keyword-only BatchOptions.

    @overload
    @classmethod
    def batch_create(
        cls,
        models: Iterable[Self],
        db: Session,
        *,
        returning: None = None,
        **options: Unpack[BatchOptions],
    ) -> int: ...
    @overload
    @classmethod
    def batch_create(
        cls,
        models: Iterable[Self],
        db: Session,
        *,
        returning: Literal["keys"],
        **options: Unpack[BatchOptions],
    ) -> builtins.list[Any]: ...
    @classmethod
    def batch_create(
        cls,
        models: Iterable[Self],
        db: Session,
        *,
        returning: Literal["keys"] | None = None,
        **options: Unpack[BatchOptions],
    ) -> int | builtins.list[Any]:
        """Insert every instance with COPY, in one transaction; return the row count.

        ``returning="keys"`` returns the primary keys in input order instead (and sets them on
        the instances). See :func:`orso_pg.batch._batch.insert`.
        """
        return batch.insert(cls, models, db, returning=returning, **options)  # type: ignore[no-any-return]

    @overload
    @classmethod
    def batch_create_with_table(
        cls,
        models: Iterable[Self],
        db: Session,
        table_name: str,
        *,
        returning: None = None,
        **options: Unpack[BatchOptions],
    ) -> int: ...
    @overload
    @classmethod
    def batch_create_with_table(
        cls,
        models: Iterable[Self],
        db: Session,
        table_name: str,
        *,
        returning: Literal["keys"],
        **options: Unpack[BatchOptions],
    ) -> builtins.list[Any]: ...
    @classmethod
    def batch_create_with_table(
        cls,
        models: Iterable[Self],
        db: Session,
        table_name: str,
        *,
        returning: Literal["keys"] | None = None,
        **options: Unpack[BatchOptions],
    ) -> int | builtins.list[Any]:
        """:meth:`batch_create` into *table_name*."""
        return batch.insert(cls, models, db, table_name, returning=returning, **options)  # type: ignore[no-any-return]

    @overload
    @classmethod
    def batch_insert(
        cls,
        models: Iterable[Self],
        db: Session,
        *,
        returning: None = None,
        **options: Unpack[BatchOptions],
    ) -> int: ...
    @overload
    @classmethod
    def batch_insert(
        cls,
        models: Iterable[Self],
        db: Session,
        *,
        returning: Literal["keys"],
        **options: Unpack[BatchOptions],
    ) -> builtins.list[Any]: ...
    @classmethod
    def batch_insert(
        cls,
        models: Iterable[Self],
        db: Session,
        *,
        returning: Literal["keys"] | None = None,
        **options: Unpack[BatchOptions],
    ) -> int | builtins.list[Any]:
        """:meth:`batch_create` (orso's legacy name); return the row count."""
        return batch.insert(cls, models, db, returning=returning, **options)  # type: ignore[no-any-return]

    @overload
    @classmethod
    def batch_insert_with_table(
        cls,
        models: Iterable[Self],
        db: Session,
        table_name: str,
        *,
        returning: None = None,
        **options: Unpack[BatchOptions],
    ) -> int: ...
    @overload
    @classmethod
    def batch_insert_with_table(
        cls,
        models: Iterable[Self],
        db: Session,
        table_name: str,
        *,
        returning: Literal["keys"],
        **options: Unpack[BatchOptions],
    ) -> builtins.list[Any]: ...
    @classmethod
    def batch_insert_with_table(
        cls,
        models: Iterable[Self],
        db: Session,
        table_name: str,
        *,
        returning: Literal["keys"] | None = None,
        **options: Unpack[BatchOptions],
    ) -> int | builtins.list[Any]:
        """:meth:`batch_create` into *table_name* (orso's name for that twin)."""
        return batch.insert(cls, models, db, table_name, returning=returning, **options)  # type: ignore[no-any-return]

    @classmethod
    def batch_create_rows(
        cls,
        rows: Iterable[Sequence[Any] | Mapping[str, Any]],
        db: Session,
        *,
        columns: Sequence[str] | None = None,
        **options: Unpack[BatchOptions],
    ) -> int:
        """Insert plain tuples or dicts through COPY without building instances; the row count.

        Tuples hold the values of *columns* in order (by default every column the server does
        not fill, in declaration order); dicts map column names to values. *rows* may also be
        columnar: a pandas DataFrame, a pyarrow Table or RecordBatch, or a dict of column
        arrays, matched to the model by column name. See
        :func:`orso_pg.batch._batch.insert_rows`.
        """
        return batch.insert_rows(cls, rows, db, columns=columns, **options)

    @classmethod
    def batch_create_rows_with_table(
        cls,
        rows: Iterable[Sequence[Any] | Mapping[str, Any]],
        db: Session,
        table_name: str,
        *,
        columns: Sequence[str] | None = None,
        **options: Unpack[BatchOptions],
    ) -> int:
        """:meth:`batch_create_rows` into *table_name*."""
        return batch.insert_rows(cls, rows, db, table_name, columns=columns, **options)

    @classmethod
    def batch_upsert_rows(
        cls,
        rows: Iterable[Sequence[Any] | Mapping[str, Any]],
        db: Session,
        *,
        columns: Sequence[str] | None = None,
        key: Sequence[str] | None = None,
        update_columns: Sequence[str] | Mapping[str, Any] | None = None,
        on_conflict: Literal["update", "nothing"] = "update",
        **options: Unpack[BatchOptions],
    ) -> UpsertResult:
        """Upsert plain tuples or dicts without building instances; the last duplicate wins.

        Tuples hold the values of *columns* in order (by default the key and every column the
        server does not fill); *rows* may also be columnar, as for :meth:`batch_create_rows`.
        See :func:`orso_pg.batch._batch.upsert_rows`.
        """
        return batch.upsert_rows(
            cls,
            rows,
            db,
            columns=columns,
            key=key,
            update_columns=update_columns,
            on_conflict=on_conflict,
            **options,
        )

    @classmethod
    def batch_upsert_rows_with_table(
        cls,
        rows: Iterable[Sequence[Any] | Mapping[str, Any]],
        db: Session,
        table_name: str,
        *,
        columns: Sequence[str] | None = None,
        key: Sequence[str] | None = None,
        update_columns: Sequence[str] | Mapping[str, Any] | None = None,
        on_conflict: Literal["update", "nothing"] = "update",
        **options: Unpack[BatchOptions],
    ) -> UpsertResult:
        """:meth:`batch_upsert_rows` in *table_name*."""
        return batch.upsert_rows(
            cls,
            rows,
            db,
            table_name,
            columns=columns,
            key=key,
            update_columns=update_columns,
            on_conflict=on_conflict,
            **options,
        )

    @classmethod
    def batch_update(
        cls,
        models: Iterable[Self],
        db: Session,
        *,
        columns: Sequence[str] | Mapping[str, Any] | None = None,
        **options: Unpack[BatchOptions],
    ) -> int:
        """Write every instance to the row with its primary key; return the rows updated.

        *columns* may map columns to expressions (``col`` stored, ``Expr.excluded`` incoming).
        """
        return batch.update(cls, models, db, columns=columns, **options)

    @classmethod
    def batch_update_with_table(
        cls,
        models: Iterable[Self],
        db: Session,
        table_name: str,
        *,
        columns: Sequence[str] | Mapping[str, Any] | None = None,
        **options: Unpack[BatchOptions],
    ) -> int:
        """:meth:`batch_update` in *table_name*."""
        return batch.update(cls, models, db, table_name, columns=columns, **options)

    @classmethod
    def batch_upsert(
        cls,
        models: Iterable[Self],
        db: Session,
        *,
        key: Sequence[str] | None = None,
        update_columns: Sequence[str] | Mapping[str, Any] | None = None,
        on_conflict: Literal["update", "nothing"] = "update",
        **options: Unpack[BatchOptions],
    ) -> UpsertResult:
        """Insert every instance, or update the row with the same key; the last duplicate wins."""
        return batch.upsert(
            cls,
            models,
            db,
            key=key,
            update_columns=update_columns,
            on_conflict=on_conflict,
            **options,
        )

    @classmethod
    def batch_upsert_with_table(
        cls,
        models: Iterable[Self],
        db: Session,
        table_name: str,
        *,
        key: Sequence[str] | None = None,
        update_columns: Sequence[str] | Mapping[str, Any] | None = None,
        on_conflict: Literal["update", "nothing"] = "update",
        **options: Unpack[BatchOptions],
    ) -> UpsertResult:
        """:meth:`batch_upsert` in *table_name*."""
        return batch.upsert(
            cls,
            models,
            db,
            table_name,
            key=key,
            update_columns=update_columns,
            on_conflict=on_conflict,
            **options,
        )

    @classmethod
    def batch_delete(
        cls, ids: Iterable[object], db: Session, **options: Unpack[BatchOptions]
    ) -> int:
        """Delete the rows with these primary keys (tuples if composite); return how many."""
        return batch.delete(cls, ids, db, **options)

    @classmethod
    def batch_delete_with_table(
        cls, ids: Iterable[object], db: Session, table_name: str, **options: Unpack[BatchOptions]
    ) -> int:
        """:meth:`batch_delete` from *table_name*."""
        return batch.delete(cls, ids, db, table_name, **options)

    @classmethod
    def batch_delete_cascade(
        cls, ids: Iterable[object], db: Session, **options: Unpack[BatchOptions]
    ) -> int:
        """Delete these rows and, first, every row referencing them, recursively."""
        return batch.delete(cls, ids, db, cascade=True, **options)

    @classmethod
    def batch_delete_cascade_with_table(
        cls, ids: Iterable[object], db: Session, table_name: str, **options: Unpack[BatchOptions]
    ) -> int:
        """:meth:`batch_delete_cascade` from *table_name*."""
        return batch.delete(cls, ids, db, table_name, cascade=True, **options)

    # --- partitions ---------------------------------------------------------------------------

    @classmethod
    def partitions(cls, db: Session) -> builtins.list[PartitionInfo]:
        """Return the table's partitions with their bounds and row estimates, oldest first."""
        meta, table, _, session = ops.setup(cls, db, None)
        return parts.list_partitions(meta, table, session)

    @classmethod
    def partitions_with_table(cls, db: Session, table_name: str) -> builtins.list[PartitionInfo]:
        """:meth:`partitions` of *table_name*."""
        meta, table, _, session = ops.setup(cls, db, table_name)
        return parts.list_partitions(meta, table, session)

    @classmethod
    def create_partitions(cls, start: object, end: object, db: Session) -> builtins.list[str]:
        """Make the range partitions holding ``[start, end)`` ahead of time; return those made.

        Writes make the partitions they need by themselves; making them ahead keeps that
        (short) lock out of a loading transaction.
        """
        meta, table, _, session = ops.setup(cls, db, None)
        return parts.create_partitions(meta, table, start, end, session)

    @classmethod
    def create_partitions_with_table(
        cls, start: object, end: object, db: Session, table_name: str
    ) -> builtins.list[str]:
        """:meth:`create_partitions` of *table_name*."""
        meta, table, _, session = ops.setup(cls, db, table_name)
        return parts.create_partitions(meta, table, start, end, session)

    @classmethod
    def drop_partitions_before(cls, cutoff: object, db: Session) -> builtins.list[str]:
        """Drop the partitions whose every row is older than *cutoff*; return their names.

        Retention in one call: a partition is dropped only when its upper bound is at most
        *cutoff*, so no row at or after the cutoff is ever lost.
        """
        meta, table, _, session = ops.setup(cls, db, None)
        return parts.drop_partitions_before(meta, table, cutoff, session)

    @classmethod
    def drop_partitions_before_with_table(
        cls, cutoff: object, db: Session, table_name: str
    ) -> builtins.list[str]:
        """:meth:`drop_partitions_before` of *table_name*."""
        meta, table, _, session = ops.setup(cls, db, table_name)
        return parts.drop_partitions_before(meta, table, cutoff, session)

    @classmethod
    def move_partitions_before(
        cls, cutoff: object, tablespace: str, db: Session
    ) -> builtins.list[str]:
        """Move the partitions older than *cutoff* (and their indexes) to *tablespace*."""
        meta, table, _, session = ops.setup(cls, db, None)
        return parts.move_partitions_before(meta, table, cutoff, tablespace, session)

    @classmethod
    def move_partitions_before_with_table(
        cls, cutoff: object, tablespace: str, db: Session, table_name: str
    ) -> builtins.list[str]:
        """:meth:`move_partitions_before` of *table_name*."""
        meta, table, _, session = ops.setup(cls, db, table_name)
        return parts.move_partitions_before(meta, table, cutoff, tablespace, session)

    @classmethod
    def copy_and_swap(
        cls, db: Session, *, chunk_size: int = 50_000, progress: ProgressOption = None
    ) -> str:
        """Rebuild the table as the model declares it (e.g. partitioned); return the old name.

        What a migration refuses to do in place, done by copying, in one transaction: the live
        table is locked against writers (readers go on), a new table is created from the model,
        the rows are copied in key order, ``chunk_size`` at a time with *progress*, and the new
        table (with its partitions) takes the names; the old one is kept as ``<table>_old``.
        """
        return swap.copy_and_swap(cls, db, chunk_size=chunk_size, progress=progress)
