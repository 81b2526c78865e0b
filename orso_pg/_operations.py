"""Single-row operations: what ``insert``, ``update``, ``upsert``, ``find_by_id`` and friends do.

Owns the steps of each row operation: checking and dumping the instance's values, choosing the
statement from :mod:`orso_pg._compiler`, running it through a session, and writing returned
columns back into the instance. It must not build SQL text itself nor touch a connection
directly (sessions hand it an :class:`~orso_pg._executor.Executor`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import sql

from orso_pg import _compiler as compiler
from orso_pg import _partitions as partitions
from orso_pg import _types
from orso_pg._compiler import Statement
from orso_pg._executor import (
    ALL,
    ONE,
    ROWCOUNT,
    SCALAR,
    Executor,
    filler,
    load_rows,
    loader,
    refused,
)
from orso_pg._schema import TableMeta, identifier_problem, note_table, table_of
from orso_pg._types import Refused
from orso_pg.errors import (
    CheckViolationError,
    NotFoundError,
    QueryError,
    ValidationError,
    describe_value,
)
from orso_pg.query._locks import RowLock, locked
from orso_pg.session._database import Session
from orso_pg.session._pipeline import Pipeline, Step

if TYPE_CHECKING:
    from orso_pg._schema import Column

__all__ = [
    "check_session",
    "check_table_name",
    "count",
    "delete",
    "delete_cascade",
    "dump_key",
    "exists",
    "find_all",
    "find_by_id",
    "insert",
    "insert_or_update",
    "key_value",
    "optional",
    "row_values",
    "run",
    "update",
    "upsert",
]

M = TypeVar("M")
R = TypeVar("R")

_FETCH: dict[int, Callable[..., Any]] = {
    ONE: Executor.fetch_one,
    ALL: Executor.fetch_all,
    ROWCOUNT: Executor.execute,
    SCALAR: Executor.scalar,
}


def run(step: Step[R]) -> R:
    """Run *step* on its session and return the operation's value.

    On a :class:`~orso_pg.session._pipeline.Pipeline` the step is queued instead and a
    ``Pending`` of that value is returned: the ``Orso`` methods' overloads say so to type
    checkers, which is why the operations here are typed for the other sessions.
    """
    session = step.session
    if type(session) is Pipeline:
        return session._queue_step(step)  # type: ignore[return-value]
    fetch = _FETCH[step.kind]
    stmt = step.stmt
    label = step.label

    def work(ex: Executor) -> Any:
        return fetch(ex, stmt, table=label)

    if step.write:
        return step.finish(session._write(work))
    if step.lock is None:
        return step.finish(session._read(work))
    return step.finish(session._read_locked(step.lock, work))


def _filled(obj: M, meta: TableMeta) -> Callable[[Any], M]:
    """Return the finish of a write returning its row: the row is copied into *obj*."""
    fill = filler(meta)

    def finish(row: Any) -> M:
        assert row is not None  # noqa: S101 - INSERT ... RETURNING always returns the row
        fill(obj, row)
        return obj

    return finish


def optional(meta: TableMeta) -> Callable[[Any], Any]:
    """Return the finish of a read of one row: an instance, or None without a row."""
    finish = _OPTIONAL.get(meta)
    if finish is None:
        load = loader(meta)
        finish = _OPTIONAL[meta] = lambda row: None if row is None else load(row)
    return finish


_OPTIONAL: dict[TableMeta, Callable[[Any], Any]] = {}


def check_session(db: object) -> Session:
    """Return *db* if it is a ``Database`` or ``Transaction``; raise a clear error otherwise."""
    if not isinstance(db, Session):
        msg = f"db must be a Database or a Transaction, not {type(db).__name__}"
        raise ValidationError(msg, value=db)
    return db


def check_table_name(meta: TableMeta, table_name: object) -> str | None:
    """Validate a ``_with_table`` table name; None means the model's own table."""
    if table_name is None:
        return None
    if not isinstance(table_name, str) or not table_name:
        msg = f"table_name must be a non-empty str, not {table_name!r}"
        raise ValidationError(msg, table=meta.name, value=table_name)
    problem = identifier_problem(table_name)
    if problem is not None:
        msg = f"table name {table_name!r} {problem}"
        raise ValidationError(msg, table=meta.name, value=table_name)
    note_table(table_name, meta)
    return table_name


def setup(
    model: object, db: object, table_name: object
) -> tuple[TableMeta, str | None, str, Session]:
    """Return what every operation starts from, checked.

    That is the model's metadata (*model* is the class or an instance), the ``_with_table`` name
    (None for the model's own table), the table name for messages, and the session.
    """
    meta = table_of(model)
    table = check_table_name(meta, table_name)
    return meta, table, table if table is not None else meta.name, check_session(db)


def _label(meta: TableMeta, table: str | None) -> str:
    return table if table is not None else meta.name


def dump_value(
    meta: TableMeta, table: str | None, col: Column, value: object, *, write: bool = True
) -> Any:
    """Check *value* for *col* and return the parameter to bind.

    This is the check of every write path, single-row and batch alike (batches run it on a row
    they could not send, to name the column). A missing-value marker (``NaN`` outside a float
    column, ``NaT``, ``pd.NA``; see :func:`orso_pg._types.missing`) is NULL, like None. With
    *write*, the value must also fit the declared type (length, precision and scale); a key
    used to find rows need not.
    """
    marker = None
    if value is not None:
        marker = _types.missing(value, col.type)
        if marker is None:
            try:
                return col.type.store(value) if write else col.type.dump(value)
            except Refused as exc:
                raise refused(meta, table, col, value, exc) from None
        if col.generated:
            msg = (
                f"{_label(meta, table)}.{col.name} = {marker}: the server fills this column "
                "when it holds None; give None, not a missing-value marker"
            )
            raise ValidationError(msg, table=_label(meta, table), column=col.name, value=value)
    if col.not_null and not col.generated:
        given = "None" if marker is None else f"the missing value {marker}"
        msg = f"{_label(meta, table)}.{col.name} is NOT NULL; {given} given"
        raise ValidationError(msg, table=_label(meta, table), column=col.name, value=value)
    return None


def dump_key(meta: TableMeta, table: str | None, key: object) -> Any:
    """Check a primary key value given by the caller and return the parameter to bind.

    A composite key is a tuple of values in key order (a list is taken too); it comes back as
    a tuple of parameters. Wrong arity, a None part or a value of the wrong type raises
    :class:`ValidationError` naming the table, the column and the key.
    """
    if meta.composite:
        return _dump_composite(meta, table, key)
    pk = compiler.require_key(meta)
    if key is None:
        msg = f"{_label(meta, table)}.{pk.name}: the primary key value is None"
        raise ValidationError(msg, table=_label(meta, table), column=pk.name, value=None)
    return dump_value(meta, table, pk, key, write=False)


def _dump_composite(meta: TableMeta, table: str | None, key: object) -> tuple[Any, ...]:
    label = _label(meta, table)
    names = ", ".join(meta.key_names)
    if not isinstance(key, (tuple, list)) or len(key) != len(meta.key):
        msg = (
            f"{label}: the primary key is ({names}), a tuple of {len(meta.key)} values; "
            f"got {describe_value(key)}"
        )
        raise ValidationError(msg, table=label, value=key)
    out = []
    for col, value in zip(meta.key, key, strict=True):
        if value is None:
            msg = f"{label}.{col.name}: None in the primary key ({names}) = {key!r}"
            raise ValidationError(msg, table=label, column=col.name, value=key)
        try:
            out.append(col.type.dump(value))
        except Refused as exc:
            shown = describe_value(value)
            msg = f"{label}.{col.name} = {shown} in the primary key ({names}) = {key!r}: {exc}"
            raise ValidationError(msg, table=label, column=col.name, value=key) from None
    return tuple(out)


def key_value(meta: TableMeta, obj: object) -> Any:
    """Return the primary key of the instance *obj*: a value, or a tuple for a composite key."""
    if meta.composite:
        return tuple(getattr(obj, c.name) for c in meta.key)
    return getattr(obj, compiler.require_key(meta).name)


def dump_keys(meta: TableMeta, table: str | None, keys: Iterable[object]) -> list[Any]:
    """Check many primary key values; return them ready to bind as one array.

    Integer keys, the common case of bulk reads and deletes, are checked as a whole (type and
    range) rather than one by one; anything else goes through the column's own check, and the
    first bad key raises naming its position. Composite keys come back as tuples.
    """
    given = keys if isinstance(keys, list) else list(keys)
    if meta.composite:
        return _each_key(meta, table, given)
    pk = compiler.require_key(meta)
    if (
        pk.type is _types.BIGINT
        and given
        and all(type(k) is int for k in given)
        and min(given) >= _types.INT8_MIN
        and max(given) <= _types.INT8_MAX
    ):
        return given
    return _each_key(meta, table, given)


def _each_key(meta: TableMeta, table: str | None, given: list[object]) -> list[Any]:
    out = []
    for i, key in enumerate(given):
        try:
            out.append(dump_key(meta, table, key))
        except ValidationError as exc:
            exc.position = i
            raise
    return out


def row_values(
    meta: TableMeta, table: str | None, obj: object, *, skip: Sequence[str] = ()
) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """Return the names and dumped values of the columns an INSERT of *obj* must send.

    Server-filled columns (generated keys, timestamps, defaults) holding None are left out so
    the server's value applies. Raises :class:`ValidationError` naming the first bad value.
    """
    names: list[str] = []
    values: list[Any] = []
    for col in meta.columns:
        if col.name in skip:
            continue
        value = getattr(obj, col.name)
        if value is None and col.generated:
            continue
        names.append(col.name)
        values.append(dump_value(meta, table, col, value))
    return tuple(names), tuple(values)


def _update_columns(meta: TableMeta) -> tuple[tuple[Column, ...], tuple[str, ...]]:
    """Return the columns an ``update`` writes (all but the key and timestamps), and their names."""
    found = _UPDATE_COLUMNS.get(meta)
    if found is None:
        skip = {*meta.key_names}
        if meta.created_at is not None:
            skip.add(meta.created_at.name)
        if meta.updated_at is not None:
            skip.add(meta.updated_at.name)
        cols = tuple(c for c in meta.columns if c.name not in skip)
        found = _UPDATE_COLUMNS[meta] = (cols, tuple(c.name for c in cols))
    return found


_UPDATE_COLUMNS: dict[TableMeta, tuple[tuple[Column, ...], tuple[str, ...]]] = {}


def update_values(
    meta: TableMeta, table: str | None, obj: object
) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """Return :func:`row_values` of *obj* for an ``update``: key and timestamps left out.

    Each value is checked as :func:`dump_value` checks it.

    The columns are listed once per model; a value of a class that is never a missing-value
    marker (see :data:`orso_pg._types.PLAIN`) goes straight to its column's check.
    """
    cols, names = _update_columns(meta)
    plain = _types.PLAIN
    values = []
    for col in cols:
        value = getattr(obj, col.name)
        if value.__class__ in plain or (value.__class__ is float and value == value):  # noqa: PLR0124
            try:
                values.append(col.type.store(value))
            except Refused as exc:
                raise refused(meta, table, col, value, exc) from None
        elif value is None and col.generated:
            # A server-filled column holding None is left out: the general path says how.
            return row_values(meta, table, obj, skip=names_skipped(meta, names))
        else:
            values.append(dump_value(meta, table, col, value))
    return names, tuple(values)


def names_skipped(meta: TableMeta, names: tuple[str, ...]) -> tuple[str, ...]:
    """Return the names of *meta*'s columns that are not in *names*."""
    return tuple(c.name for c in meta.columns if c.name not in names)


def insert(obj: M, db: object, table_name: object = None) -> M:
    """Insert *obj*; the generated key and timestamps are written back into it."""
    meta, table, label, session = setup(obj, db, table_name)
    names, values = row_values(meta, table, obj)
    stmt = compiler.insert(meta, table, names, values)
    return _write_row(session, meta, table, obj, stmt, label, _filled(obj, meta))


def _placed(
    meta: TableMeta, table: str | None, obj: object, stmt: Statement, label: str
) -> Callable[[Executor], tuple[Any, ...] | None]:
    """Return the work writing *obj* with *stmt* into a partitioned table, partition first."""

    def work(ex: Executor) -> tuple[Any, ...] | None:
        partitions.ensure_rows(ex, meta, table, (obj,))
        try:
            return ex.fetch_one(stmt, table=label)
        except CheckViolationError as exc:
            # Another session dropped a partition this connection remembered: look again.
            if not partitions.stale(ex, meta, table, exc):
                raise
        partitions.ensure_rows(ex, meta, table, (obj,))
        return ex.fetch_one(stmt, table=label)

    return work


def _write_row(
    session: Session,
    meta: TableMeta,
    table: str | None,
    obj: M,
    stmt: Statement,
    label: str,
    finish: Callable[[Any], M],
) -> M:
    """Write one row with *stmt* (RETURNING it) and hand the row to *finish*.

    A partitioned table's partition must exist before the row is sent: a pipeline makes it
    first (see ``Pipeline._prepare``), any other session in the write's own transaction.
    """
    if meta.placement.partitioning is not None:
        if type(session) is not Pipeline:
            return finish(session._write(_placed(meta, table, obj, stmt, label)))
        session._prepare(lambda ex: partitions.ensure_rows(ex, meta, table, (obj,)))
    return run(Step(session, stmt, ONE, label, finish, write=True))


def find_by_id(
    cls: type[M],
    key: object,
    db: object,
    table_name: object = None,
    *,
    lock: RowLock | None = None,
) -> M | None:
    """Return the row whose primary key is *key*, or None; locked by *lock* when given."""
    if table_name is None and lock is None:
        # The common case, in fewer steps: a single-column key of a class that needs no look
        # for missing-value markers, which its column accepts.
        meta = table_of(cls)
        if key.__class__ in _types.PLAIN and len(meta.key) == 1:
            try:
                param = meta.key[0].type.dump(key)
            except Refused:
                pass  # the general path below raises the error naming the column
            else:
                stmt = compiler.select_by_key(meta, None, param)
                if type(db) is Pipeline:
                    return db._enqueue(stmt, ONE, meta.name, optional(meta))  # type: ignore[return-value]
                label = meta.name
                row = check_session(db)._read(lambda ex: ex.fetch_one(stmt, table=label))
                return optional(meta)(row)  # type: ignore[no-any-return]
    meta, table, label, session = setup(cls, db, table_name)
    session._check_lock(lock, label)
    stmt = compiler.select_by_key(meta, table, dump_key(meta, table, key))
    stmt = locked(stmt, lock, label)
    result: M | None = run(Step(session, stmt, ONE, label, optional(meta), lock=lock))
    return result


def find_all(cls: type[M], db: object, table_name: object = None) -> list[M]:
    """Return every row, in primary key order when the model has one."""
    meta, table, label, session = setup(cls, db, table_name)
    stmt = compiler.select_all(meta, table)
    result: list[M] = run(Step(session, stmt, ALL, label, lambda rows: load_rows(meta, rows)))
    return result


def _key_of(meta: TableMeta, table: str | None, obj: object, action: str) -> Any:
    if meta.composite:
        key_parts = key_value(meta, obj)
        for col, part in zip(meta.key, key_parts, strict=True):
            if part is None:
                msg = (
                    f"cannot {action} a {meta.cls.__name__} without its primary key "
                    f"({col.name} is None)"
                )
                raise ValidationError(msg, table=_label(meta, table), column=col.name, value=None)
        return _dump_composite(meta, table, key_parts)
    pk = compiler.require_key(meta)
    key = getattr(obj, pk.name)
    if key.__class__ in _types.PLAIN:
        try:
            return pk.type.dump(key)
        except Refused:
            pass  # dump_value below raises the error naming the column
    if key is None:
        msg = f"cannot {action} a {meta.cls.__name__} without a primary key ({pk.name} is None)"
        raise ValidationError(msg, table=_label(meta, table), column=pk.name, value=None)
    return dump_value(meta, table, pk, key, write=False)


def update(obj: M, db: object, table_name: object = None) -> M:
    """Write every column of *obj* to its row (``updated_at`` is set by the server).

    Raises:
        NotFoundError: no row has the instance's primary key.
    """
    meta, table, label, session = setup(obj, db, table_name)
    key = _key_of(meta, table, obj, "update")
    names, values = update_values(meta, table, obj)
    stmt = compiler.update_by_key(meta, table, names, values, key)
    fill = filler(meta)

    def finish(row: Any) -> M:
        if row is None:
            where = " AND ".join(
                f"{c.name} = {describe_value(v)}"
                for c, v in zip(meta.key, compiler.key_params(meta, key), strict=True)
            )
            msg = f"{label}: no row with {where} to update"
            raise NotFoundError(msg, table=label, value=key)
        fill(obj, row)
        return obj

    return _write_row(session, meta, table, obj, stmt, label, finish)


def delete(obj: object, db: object, table_name: object = None) -> bool:
    """Delete the row of *obj*; return whether a row was deleted."""
    meta, table, label, session = setup(obj, db, table_name)
    key = _key_of(meta, table, obj, "delete")
    stmt = compiler.delete_by_key(meta, table, key)
    return run(Step(session, stmt, ROWCOUNT, label, _positive, write=True))


def _positive(rowcount: int) -> bool:
    return rowcount > 0


def delete_cascade(obj: object, db: object, table_name: object = None) -> bool:
    """Delete the row of *obj* and, first, every row that references it, recursively.

    The referencing rows are found from the live foreign keys in the catalog, so tables created
    under other names are covered too. It all happens in one transaction.
    """
    meta, table, label, session = setup(obj, db, table_name)
    key = _key_of(meta, table, obj, "delete")
    target = meta.qualified(table)

    def work(ex: Executor) -> bool:
        where = Statement(compiler.key_match(meta), compiler.key_params(meta, key))
        return cascade_delete(ex, target, where, label) > 0

    return session._atomic(work)


_FOREIGN_KEYS = sql.SQL(
    "SELECT n.nspname, cl.relname, "
    "array_agg(a.attname ORDER BY k.n), array_agg(r.attname ORDER BY k.n), c.confdeltype "
    "FROM pg_constraint c "
    "JOIN pg_class cl ON cl.oid = c.conrelid "
    "JOIN pg_namespace n ON n.oid = cl.relnamespace "
    "CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(child, parent, n) "
    "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.child "
    "JOIN pg_attribute r ON r.attrelid = c.confrelid AND r.attnum = k.parent "
    "WHERE c.contype = 'f' AND c.confrelid = %s::regclass "
    "GROUP BY c.oid, n.nspname, cl.relname, c.confdeltype"
)
_MAX_CASCADE_DEPTH = 32


def cascade_delete(
    ex: Executor, target: sql.Identifier, where: Statement, label: str, depth: int = 0
) -> int:
    """Delete the rows of *target* matching *where*, after the rows that reference them.

    Foreign keys whose ``ON DELETE`` already cascades or nulls are left to the server. Others
    are followed depth first; a level is only descended into when rows reference the doomed
    ones, so self-referencing trees end where the tree ends.
    """
    if depth > _MAX_CASCADE_DEPTH:
        msg = f"{label}: references nest more than {_MAX_CASCADE_DEPTH} levels; not cascading"
        raise QueryError(msg, table=label)
    fks = ex.fetch_all(Statement(_FOREIGN_KEYS, (target.as_string(None),)), table=label)
    for schema, child, child_cols, parent_cols, action in fks:
        if action in ("c", "n", "d"):
            continue
        child_ident = sql.Identifier(schema, child)
        sub = Statement(
            sql.SQL("({}) IN (SELECT {} FROM {} WHERE {})").format(
                sql.SQL(", ").join(map(sql.Identifier, child_cols)),
                sql.SQL(", ").join(map(sql.Identifier, parent_cols)),
                target,
                where.query,
            ),
            where.params,
        )
        probe = Statement(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(child_ident, sub.query),
            sub.params,
        )
        if ex.scalar(probe, table=label):
            cascade_delete(ex, child_ident, sub, label, depth + 1)
    stmt = Statement(sql.SQL("DELETE FROM {} WHERE {}").format(target, where.query), where.params)
    return ex.execute(stmt, table=label)


def insert_or_update(obj: M, db: object, table_name: object = None) -> M:
    """Insert *obj*, or update its row when its primary key exists: one statement."""
    meta = table_of(obj)
    compiler.require_keys(meta)
    parts = key_value(meta, obj) if meta.composite else (key_value(meta, obj),)
    if any(part is None for part in parts):
        return insert(obj, db, table_name)
    return _upsert_on(obj, db, table_name, meta.key_names)


def upsert(obj: M, db: object, table_name: object = None) -> M:
    """Insert *obj*, or update the row holding the same unique key: one statement.

    The conflict key is the model's declared unique key (``column(unique=True)``, a composite
    ``@table(unique=...)`` key, or ``@table(upsert_key=...)`` when there are several). The stored
    row comes back, so the instance gets the existing primary key and timestamps.
    """
    meta = table_of(obj)
    return _upsert_on(obj, db, table_name, upsert_key(meta))


def upsert_key(meta: TableMeta) -> tuple[str, ...]:
    """Return the key upserts of *meta* conflict on, or raise a clear :class:`QueryError`.

    The key is ``@table(upsert_key=...)``, else the one declared unique key, else a natural
    (not server-generated) primary key when the model has no unique key.
    """
    if meta.upsert_key is not None:
        return meta.upsert_key
    name = meta.cls.__name__
    choose = (
        "name the conflict key with key=[...] (batch_upsert) or @table(upsert_key=...) on the model"
    )
    if meta.unique_keys:
        candidates = list(meta.unique_keys)
        if meta.key and not any(c.generated for c in meta.key):
            candidates.insert(0, meta.key_names)
        keys = ", ".join("[" + ", ".join(repr(c) for c in k) + "]" for k in candidates)
        msg = f"{name} has several keys an upsert could conflict on ({keys}); {choose}"
        raise QueryError(msg, table=meta.name)
    if meta.key:
        shown = ", ".join(repr(c.name) for c in meta.key if c.generated)
        msg = (
            f"{name} has no unique key for upsert, and its primary key {shown} is generated "
            "by the server, so a new row never conflicts on it (insert_or_update() updates "
            "by primary key); declare column(unique=True) or @table(unique=[...]) and "
            f"{choose}"
        )
    else:
        msg = (
            f"{name} has no primary key nor unique key for upsert; declare column(unique=True) "
            f"or @table(unique=[...]) and {choose}"
        )
    raise QueryError(msg, table=meta.name)


def _upsert_on(obj: M, db: object, table_name: object, conflict: tuple[str, ...]) -> M:
    meta, table, label, session = setup(obj, db, table_name)
    names, values = row_values(meta, table, obj)
    missing = [k for k in conflict if k not in names]
    if missing:
        msg = f"upsert on {conflict} needs a value for {', '.join(missing)}"
        raise ValidationError(msg, table=label, column=missing[0], value=None)
    stmt = compiler.upsert(meta, table, names, values, conflict)
    return _write_row(session, meta, table, obj, stmt, label, _filled(obj, meta))


def count(cls: type, db: object, table_name: object = None, where: Statement | None = None) -> int:
    """Return the number of rows (matching *where* when given)."""
    meta, table, label, session = setup(cls, db, table_name)
    stmt = compiler.count(meta, table, where)
    return run(Step(session, stmt, SCALAR, label, int))


def exists(
    cls: type, db: object, table_name: object = None, where: Statement | None = None
) -> bool:
    """Return whether any row exists (matching *where* when given); stops at the first."""
    meta, table, label, session = setup(cls, db, table_name)
    stmt = compiler.exists(meta, table, where)
    return run(Step(session, stmt, SCALAR, label, bool))
