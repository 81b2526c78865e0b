"""Row locks: the ``FOR UPDATE / FOR SHARE [OF ...] [NOWAIT | SKIP LOCKED]`` clause of a read.

Owns :class:`RowLock`, the value a caller passes as ``lock=`` to a finder or gives a
``QueryBuilder`` through ``for_update`` / ``for_share``, and its compilation. It is pure: it
never runs anything, and whether a session can hold a lock (only a transaction can) is checked
by the session. The tables named in ``of`` are checked against the tables of the query.

>>> RowLock.update(skip_locked=True).clause(("jobs",)).as_string()
' FOR UPDATE SKIP LOCKED'
>>> RowLock.share(of="jobs", nowait=True).clause(("jobs",)).as_string()
' FOR SHARE OF "jobs" NOWAIT'
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Any, Final

import attrs
from psycopg import sql

from orso_pg._compiler import Statement
from orso_pg._memo import Memo
from orso_pg._schema import table_of
from orso_pg.errors import QueryError
from orso_pg.query._filters import isa

__all__ = ["LockStrength", "RowLock", "locked"]


class LockStrength(enum.Enum):
    """How strongly the rows read are locked (PostgreSQL's four row-level lock modes)."""

    UPDATE = "UPDATE"
    NO_KEY_UPDATE = "NO KEY UPDATE"
    SHARE = "SHARE"
    KEY_SHARE = "KEY SHARE"


_STRENGTH_SQL: Final = {
    LockStrength.UPDATE: sql.SQL(" FOR UPDATE"),
    LockStrength.NO_KEY_UPDATE: sql.SQL(" FOR NO KEY UPDATE"),
    LockStrength.SHARE: sql.SQL(" FOR SHARE"),
    LockStrength.KEY_SHARE: sql.SQL(" FOR KEY SHARE"),
}


def _table_names(of: object) -> tuple[str, ...]:
    if of is None:
        return ()
    items: Iterable[object] = (
        [of] if isinstance(of, str | type) or not isinstance(of, Iterable) else of
    )
    names: list[str] = []
    for item in items:
        if isinstance(item, str) and item:
            names.append(item)
        elif isinstance(item, type):
            names.append(table_of(item).name)
        else:
            msg = f"of= names tables (a table name or a model class), not {item!r}"
            raise QueryError(msg, value=item)
    return tuple(names)


@attrs.frozen
class RowLock:
    """A row lock taken by a read, held until the transaction ends.

    Build one with :meth:`update`, :meth:`no_key_update`, :meth:`share` or :meth:`key_share`.
    ``nowait=True`` raises :class:`~orso_pg.LockNotAvailableError` at once when a row is
    locked by another transaction; ``skip_locked=True`` leaves such rows out (a job queue's
    way of handing each row to one worker). ``of`` limits the lock to these tables of a join.

    Attributes:
        strength: The lock mode.
        nowait: Fail rather than wait for a locked row.
        skip_locked: Skip locked rows rather than wait.
        of: Table names (or join aliases) to lock; empty for every table read.
    """

    strength: LockStrength = LockStrength.UPDATE
    nowait: bool = False
    skip_locked: bool = False
    of: tuple[str, ...] = attrs.field(default=(), converter=_table_names)

    def __attrs_post_init__(self) -> None:
        if not isa(self.strength, LockStrength):
            msg = f"a row lock's strength is a LockStrength, not {self.strength!r}"
            raise QueryError(msg, value=self.strength)
        for name in ("nowait", "skip_locked"):
            if not isa(getattr(self, name), bool):
                msg = f"{name} must be True or False, not {getattr(self, name)!r}"
                raise QueryError(msg, value=getattr(self, name))
        if self.nowait and self.skip_locked:
            msg = "a row lock cannot both fail on locked rows (nowait) and skip them (skip_locked)"
            raise QueryError(msg)

    @classmethod
    def update(cls, *, nowait: bool = False, skip_locked: bool = False, of: Any = None) -> RowLock:
        """``FOR UPDATE``: the rows will be changed or deleted; blocks every other lock."""
        return cls(LockStrength.UPDATE, nowait, skip_locked, of)

    @classmethod
    def no_key_update(
        cls, *, nowait: bool = False, skip_locked: bool = False, of: Any = None
    ) -> RowLock:
        """``FOR NO KEY UPDATE``: as ``update``, but inserts referencing the rows still pass."""
        return cls(LockStrength.NO_KEY_UPDATE, nowait, skip_locked, of)

    @classmethod
    def share(cls, *, nowait: bool = False, skip_locked: bool = False, of: Any = None) -> RowLock:
        """``FOR SHARE``: the rows must not change until the transaction ends."""
        return cls(LockStrength.SHARE, nowait, skip_locked, of)

    @classmethod
    def key_share(
        cls, *, nowait: bool = False, skip_locked: bool = False, of: Any = None
    ) -> RowLock:
        """``FOR KEY SHARE``: the rows' keys must not change (what a foreign key check takes)."""
        return cls(LockStrength.KEY_SHARE, nowait, skip_locked, of)

    def clause(self, tables: Sequence[str]) -> sql.Composable:
        """Return `` FOR <strength> [OF ...] [NOWAIT | SKIP LOCKED]`` for a query on *tables*."""
        unknown = [t for t in self.of if t not in tables]
        if unknown:
            msg = (
                f"of={list(unknown)} names no table of this query; tables are: {', '.join(tables)}"
            )
            raise QueryError(msg, table=tables[0] if tables else None, value=self.of)
        parts: list[sql.Composable] = [_STRENGTH_SQL[self.strength]]
        if self.of:
            parts.append(sql.SQL(" OF {}").format(sql.SQL(", ").join(map(sql.Identifier, self.of))))
        if self.nowait:
            parts.append(sql.SQL(" NOWAIT"))
        elif self.skip_locked:
            parts.append(sql.SQL(" SKIP LOCKED"))
        return sql.Composed(parts)


# Locked statements, per lock and per statement object: the compiler hands back one object per
# statement shape, so a locked read made again finds its text here, already rendered once.
_LOCKED: Final[Memo[sql.Composable]] = Memo()


def locked(stmt: Statement, lock: RowLock | None, table: str) -> Statement:
    """Return *stmt* (a one-table ``SELECT``) with *lock*'s clause appended (as is when None)."""
    if lock is None:
        return stmt
    if not isa(lock, RowLock):
        msg = f"lock= takes a RowLock (e.g. RowLock.update(skip_locked=True)), not {lock!r}"
        raise QueryError(msg, table=table, value=lock)
    query = _LOCKED.get((lock, table), (stmt.query,))
    if query is None:
        clause = lock.clause((table,))
        query = _LOCKED.put((lock, table), sql.Composed([stmt.query, clause]), (stmt.query,))
    return Statement(query, stmt.params)
