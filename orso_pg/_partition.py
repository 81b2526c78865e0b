"""Where a model's rows live: partitioning, tablespaces and Citus distribution, as declared.

Owns the public ``partition`` declarations (``partition.range("ts", every="1 day")``,
``partition.list("symbol")``), :class:`Placement` (what ``@table(partition_by=..., tablespace=...,
index_tablespace=..., distribute_by=..., colocate_with=..., reference=...)`` asked for, checked
once at decoration), :class:`PartitionInfo` (one live partition as ``Model.partitions`` lists
it) and the pure arithmetic of ranges: which range a value falls in, its bounds and the name of
its partition. It must not build SQL, talk to a database nor import the schema module (which
imports it): the columns it checks come in as plain values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal, NoReturn

import attrs

from orso_pg import _types
from orso_pg.errors import DefinitionError

__all__ = [
    "ListPartitioning",
    "PartitionInfo",
    "Partitioning",
    "Placement",
    "RangePartitioning",
    "partition",
    "partition_name",
    "resolve",
]

MAX_NAME_BYTES: Final = 63
UTC: Final = dt.UTC
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=UTC)
# Weeks start on Monday: 1970-01-05 was one.
_MONDAY: Final = dt.datetime(1970, 1, 5, tzinfo=UTC)
_EPOCH_ORDINAL: Final = _EPOCH.date().toordinal()
_ZERO: Final = dt.timedelta(0)
_TZINFO: Final = operator.attrgetter("tzinfo")
_UNIT_SECONDS: Final = {"hour": 3600, "day": 86400, "week": 7 * 86400}
_EVERY: Final = re.compile(r"^\s*(\d+)?\s*(hour|day|week|month|year)s?\s*$", re.IGNORECASE)
_SAFE_VALUE: Final = re.compile(r"^[A-Za-z0-9_]{1,40}$")

Unit = Literal["hour", "day", "week", "month", "year"]


@attrs.frozen
class RangePartitioning:
    """``PARTITION BY RANGE (column)``, one partition per *every* (made by ``partition.range``).

    Attributes:
        column: The partition column (a ``datetime``, ``date`` or ``int`` field).
        every: The width of a partition: ``"1 hour"``, ``"1 day"``, ``"7 days"``,
            ``"1 week"``, ``"1 month"``, ``"1 year"`` for time columns (ranges are aligned in
            UTC), a positive int for an int column.
        default: Also create a DEFAULT partition, which takes rows no range partition holds
            (rows orso_pg writes always get their range partition first).
    """

    column: str
    every: str | int = "1 day"
    default: bool = False

    @property
    def strategy(self) -> str:
        """``RANGE``."""
        return "RANGE"


@attrs.frozen
class ListPartitioning:
    """``PARTITION BY LIST (column)``, one partition per value (made by ``partition.list``).

    Attributes:
        column: The partition column (a ``str``, ``int``, ``bool``, ``date`` or enum field).
        default: Also create a DEFAULT partition.
    """

    column: str
    default: bool = False

    @property
    def strategy(self) -> str:
        """``LIST``."""
        return "LIST"


Partitioning = RangePartitioning | ListPartitioning


class _Partition:
    """The declarations of ``@table(partition_by=...)``: ``partition.range`` and ``partition.list``.

    >>> from orso_pg import partition
    >>> partition.range("ts", every="1 day")
    RangePartitioning(column='ts', every='1 day', default=False)
    """

    __slots__ = ()
    __module__ = "orso_pg"

    @staticmethod
    def range(
        column: str, every: str | int = "1 day", *, default: bool = False
    ) -> RangePartitioning:
        """Partition by ranges of *column*, one partition per *every*.

        Args:
            column: The partition column: ``datetime`` (TIMESTAMPTZ), ``date`` or ``int``.
            every: ``"1 hour"``, ``"1 day"``, ``"N days"``, ``"1 week"``, ``"1 month"``,
                ``"1 year"`` (aligned in UTC), or a positive int width for an int column.
            default: Also create a DEFAULT partition.
        """
        return RangePartitioning(column, every, default)

    @staticmethod
    def list(column: str, *, default: bool = False) -> ListPartitioning:
        """Partition by the values of *column*, one partition per value, made on demand."""
        return ListPartitioning(column, default)

    def __repr__(self) -> str:
        return "orso_pg.partition"


partition: Final = _Partition()


@attrs.frozen
class PartitionInfo:
    """One partition of a partitioned table, as ``Model.partitions(db)`` lists it.

    Attributes:
        name: The partition's table name.
        lower: The inclusive lower bound of a range partition (None: unbounded or not range).
        upper: The exclusive upper bound of a range partition (None: unbounded or not range).
        values: The values of a list partition (empty for range and default partitions).
        default: Whether it is the DEFAULT partition.
        rows: PostgreSQL's row estimate (``pg_class.reltuples``); None before the partition
            was first analyzed or vacuumed.
        tablespace: Its tablespace; None for the database's default.
    """

    name: str
    lower: Any = None
    upper: Any = None
    values: tuple[Any, ...] = ()
    default: bool = False
    rows: int | None = None
    tablespace: str | None = None


@attrs.frozen
class Ranges:
    """The resolved arithmetic of a range partitioning: value to range key to bounds.

    A range key is an int numbering the ranges from an origin (the Unix epoch for hours and
    days, a Monday for weeks, year 0 for months); it is what partitions are made from.

    Attributes:
        kind: ``"time"`` (TIMESTAMPTZ), ``"date"`` or ``"int"``.
        unit: The calendar unit (``None`` for int columns).
        size: How many units (or, for int columns, the width) one range spans.
    """

    kind: Literal["time", "date", "int"]
    unit: Unit | None
    size: int

    def keys(self, values: Iterable[Any]) -> set[int]:
        """Return the range keys of *values* (values of another type are skipped)."""
        if self.kind == "int":
            size = self.size
            return {v // size for v in values if type(v) is int}
        if self.kind == "time":
            aware = [v for v in values if isinstance(v, dt.datetime) and v.tzinfo is not None]
            if self.unit == "hour":
                return self.stamp_keys(aware, 3600 * self.size)
            return self.day_keys(self.stamp_keys(aware, 86400))
        dates = {v for v in values if isinstance(v, dt.date) and not isinstance(v, dt.datetime)}
        return {self.key_of(d) for d in dates}

    def stamp_keys(self, values: Sequence[dt.datetime], width: int) -> set[int]:
        """Return ``floor(timestamp / width)`` of aware datetimes, computed in C loops."""
        stamps = map(dt.datetime.timestamp, values)
        return set(map(int, map(operator.floordiv, stamps, itertools.repeat(float(width)))))

    def day_keys(self, days: Iterable[int]) -> set[int]:
        """Return the range keys of days counted from the epoch (every range is whole days)."""
        return {self.key_of(_EPOCH + dt.timedelta(days=d)) for d in days}

    def fast_keys(self, values: Sequence[Any]) -> set[int] | None:
        """Return the keys of *values* when every one has the column's own type, else None.

        The loops run in C (``map``), so a chunk of a million timestamps costs a few tens of
        milliseconds; one value of another type (None, a naive datetime, a string) sends the
        caller to the careful path.
        """
        try:
            if self.kind == "time":
                if self.unit == "hour":
                    return self.stamp_keys(values, 3600 * self.size)
                zones = set(map(_TZINFO, values))
                if all(isinstance(z, dt.timezone) and z.utcoffset(None) == _ZERO for z in zones):
                    # Every value is in UTC: its date is its UTC day, and date() is cheap.
                    days = set(map(dt.datetime.date, values))
                    return self.day_keys(d.toordinal() - _EPOCH_ORDINAL for d in days)
                return self.day_keys(self.stamp_keys(values, 86400))
            if self.kind == "int":
                return set(map(operator.floordiv, values, itertools.repeat(self.size)))
            return {self.key_of(d) for d in set(values)}
        except (TypeError, AttributeError, ValueError, OverflowError):
            return None

    def key_of(self, value: Any) -> int:
        """Return the range key of one value."""
        if self.kind == "int":
            return int(value) // self.size
        if self.unit in ("month", "year"):
            months = self.size * (12 if self.unit == "year" else 1)
            if isinstance(value, dt.datetime):
                value = value.astimezone(UTC)
            return int(value.year * 12 + value.month - 1) // months
        assert self.unit is not None  # noqa: S101 - time and date ranges have a unit
        if self.kind == "date":
            days = _UNIT_SECONDS[self.unit] // 86400 * self.size
            origin = (_MONDAY if self.unit == "week" else _EPOCH).date().toordinal()
            return int(value.toordinal() - origin) // days
        seconds = _UNIT_SECONDS[self.unit] * self.size
        origin_ts = (_MONDAY if self.unit == "week" else _EPOCH).timestamp()
        return int((value.timestamp() - origin_ts) // seconds)

    def lower(self, key: int) -> Any:
        """Return the inclusive lower bound of the range *key*."""
        if self.kind == "int":
            return key * self.size
        if self.unit in ("month", "year"):
            index = key * self.size * (12 if self.unit == "year" else 1)
            year, month = divmod(index, 12)
            if self.kind == "date":
                return dt.date(year, month + 1, 1)
            return dt.datetime(year, month + 1, 1, tzinfo=UTC)
        assert self.unit is not None  # noqa: S101 - time and date ranges have a unit
        origin = _MONDAY if self.unit == "week" else _EPOCH
        start = origin + dt.timedelta(seconds=_UNIT_SECONDS[self.unit] * self.size * key)
        return start.date() if self.kind == "date" else start

    def upper(self, key: int) -> Any:
        """Return the exclusive upper bound of the range *key*."""
        return self.lower(key + 1)

    def suffix(self, key: int) -> str:
        """Return the part of a partition's name that tells its range apart."""
        low = self.lower(key)
        if self.kind == "int":
            return str(low).replace("-", "m")
        formats = {"hour": "%Y%m%d%H", "month": "%Y%m", "year": "%Y"}
        return str(low.strftime(formats.get(self.unit or "day", "%Y%m%d")))

    def between(self, start: Any, end: Any) -> range:
        """Return the keys of the ranges that hold a value in ``[start, end)``."""
        first, last = self.key_of(start), self.key_of(end)
        if self.lower(last) == end:
            last -= 1
        return range(first, last + 1)


@attrs.frozen
class Placement:
    """Where a model's table and rows live, as ``@table`` declared it.

    Attributes:
        partitioning: The partitioning, or None for a plain table.
        ranges: The resolved arithmetic of a range partitioning.
        column_type: The partition column's type.
        tablespace: The table's tablespace (for a partitioned table: where new partitions go).
        index_tablespace: The tablespace of its indexes (primary key and unique ones too).
        distribute_by: The Citus distribution column.
        colocate_with: The table the distributed table is co-located with.
        reference: A Citus reference table (a copy on every node).
        require_distribution: Fail the migration when the server has no ``citus`` extension.
    """

    partitioning: Partitioning | None = None
    ranges: Ranges | None = None
    column_type: _types.ColumnType | None = None
    tablespace: str | None = None
    index_tablespace: str | None = None
    distribute_by: str | None = None
    colocate_with: str | None = None
    reference: bool = False
    require_distribution: bool = False

    @property
    def distributed(self) -> bool:
        """Whether Citus should distribute the table (or replicate it, for a reference table)."""
        return self.distribute_by is not None or self.reference


def fit(name: str) -> str:
    """Return *name*, shortened with a hash when it is longer than PostgreSQL keeps."""
    data = name.encode("utf-8")
    if len(data) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()[:8]
    head = data[: MAX_NAME_BYTES - 9].decode("utf-8", "ignore")
    return f"{head}_{digest}"


def partition_name(table: str, suffix: str) -> str:
    """Return the name of *table*'s partition whose range or value *suffix* spells."""
    return fit(f"{table}_p{suffix}")


def default_name(table: str) -> str:
    """Return the name of *table*'s DEFAULT partition."""
    return fit(f"{table}_default")


def value_suffix(value: object) -> str:
    """Return the name part of a list partition holding *value*."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dt.date):
        text = value.strftime("%Y%m%d")
    else:
        text = str(value)
    if _SAFE_VALUE.match(text):
        return text
    return "h" + hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:12]


# --- checking a declaration -------------------------------------------------------------------


def _fail(cls: type, field: str | None, message: str) -> NoReturn:
    where = f"{cls.__qualname__}.{field}" if field else cls.__qualname__
    raise DefinitionError(f"{where}: {message}", column=field)


def _ranges(cls: type, spec: RangePartitioning, ctype: _types.ColumnType) -> Ranges:
    column = spec.column
    if ctype is _types.BIGINT:
        if isinstance(spec.every, bool) or not isinstance(spec.every, int) or spec.every < 1:
            _fail(
                cls,
                column,
                f"an int partition column needs every= a positive int width, not {spec.every!r}",
            )
        return Ranges("int", None, spec.every)
    kind: Literal["time", "date"] = "time" if ctype is _types.TIMESTAMPTZ else "date"
    found = _EVERY.match(spec.every) if isinstance(spec.every, str) else None
    if found is None:
        _fail(
            cls,
            column,
            f"every={spec.every!r} is not a time width; use '1 hour', '1 day', 'N days', "
            "'1 week', '1 month' or '1 year'",
        )
    size = int(found.group(1) or 1)
    unit = typing_unit(found.group(2).lower())
    if size < 1:
        _fail(cls, column, f"every={spec.every!r} must be at least 1 {unit}")
    if kind == "date" and unit == "hour":
        _fail(cls, column, "a date column cannot be partitioned by hours; use a datetime column")
    return Ranges(kind, unit, size)


def typing_unit(text: str) -> Unit:
    """Return *text* as a :data:`Unit` (it matched the unit pattern)."""
    units: dict[str, Unit] = {
        "hour": "hour",
        "day": "day",
        "week": "week",
        "month": "month",
        "year": "year",
    }
    return units[text]


_LIST_TYPES: Final = (_types.TEXT, _types.BIGINT, _types.DATE)


def _keys_include(
    cls: type, column: str, key: Sequence[str], unique_keys: Sequence[tuple[str, ...]], why: str
) -> None:
    if key and column not in key:
        shown = ", ".join(key)
        fixed = ", ".join(repr(k) for k in (*key, column))
        _fail(
            cls,
            column,
            f"the primary key ({shown}) must include the {why} column {column!r} "
            f"(PostgreSQL requires it); declare @table(primary_key=({fixed}))",
        )
    for unique in unique_keys:
        if column not in unique:
            shown = ", ".join(unique)
            fixed = ", ".join(repr(k) for k in (*unique, column))
            _fail(
                cls,
                column,
                f"the unique key ({shown}) must include the {why} column {column!r} "
                f"(PostgreSQL requires it); declare @table(unique=[({fixed})]) instead",
            )


def resolve(
    cls: type,
    columns: Mapping[str, tuple[_types.ColumnType, bool, bool]],
    key: Sequence[str],
    unique_keys: Sequence[tuple[str, ...]],
    *,
    partition_by: object = None,
    tablespace: str | None = None,
    index_tablespace: str | None = None,
    distribute_by: str | None = None,
    colocate_with: object = None,
    reference: bool = False,
    require_distribution: bool = False,
) -> Placement:
    """Check what ``@table`` declared about placement; return it resolved.

    Args:
        cls: The model class, for messages.
        columns: Each column's type, whether it accepts NULL and whether the server fills it.
        key: The primary key's column names.
        unique_keys: Every unique key.
        partition_by: ``partition.range(...)`` or ``partition.list(...)``.
        tablespace: The table's tablespace.
        index_tablespace: The indexes' tablespace.
        distribute_by: The Citus distribution column.
        colocate_with: A model class or table name to co-locate with.
        reference: A Citus reference table.
        require_distribution: Refuse to migrate without Citus.

    Raises:
        DefinitionError: the declaration cannot work; the message says how to fix it.
    """
    ranges = None
    ctype = None
    if partition_by is not None:
        if not isinstance(partition_by, (RangePartitioning, ListPartitioning)):
            _fail(
                cls,
                None,
                "partition_by= takes partition.range(...) or partition.list(...), "
                f"not {partition_by!r}",
            )
        name = partition_by.column
        if name not in columns:
            _fail(cls, None, f"partition_by names unknown field {name!r}")
        ctype, nullable, generated = columns[name]
        if generated:
            _fail(
                cls, name, "the partition column is filled by the server; rows must carry its value"
            )
        if nullable and not partition_by.default:
            _fail(
                cls,
                name,
                "the partition column accepts None, which only a DEFAULT partition can hold; "
                "make the field required or pass default=True",
            )
        if isinstance(partition_by, RangePartitioning):
            if ctype not in (_types.TIMESTAMPTZ, _types.DATE, _types.BIGINT):
                _fail(
                    cls,
                    name,
                    f"range partitions need a datetime, date or int column, not {ctype.label}",
                )
            ranges = _ranges(cls, partition_by, ctype)
        elif ctype not in _LIST_TYPES and ctype.choices is None and ctype is not _types.BOOLEAN:
            _fail(
                cls,
                name,
                f"list partitions need a str, int, bool, date or enum column, not {ctype.label}",
            )
        _keys_include(cls, name, key, unique_keys, "partition")
    spaces: tuple[tuple[str, object], ...] = (
        ("tablespace", tablespace),
        ("index_tablespace", index_tablespace),
    )
    for label, value in spaces:
        if value is not None and (not isinstance(value, str) or not value):
            _fail(cls, None, f"{label}= takes a tablespace name, not {value!r}")
    colocated = _colocated(cls, colocate_with)
    if reference and distribute_by is not None:
        _fail(
            cls,
            None,
            "a reference table is copied whole to every node: give reference=True or "
            "distribute_by=, not both",
        )
    if colocated is not None and distribute_by is None:
        _fail(cls, None, "colocate_with= needs distribute_by=")
    if require_distribution and distribute_by is None and not reference:
        _fail(cls, None, "require_distribution=True needs distribute_by= or reference=True")
    if distribute_by is not None:
        if distribute_by not in columns:
            _fail(cls, None, f"distribute_by names unknown field {distribute_by!r}")
        if columns[distribute_by][0].compressed:
            _fail(cls, distribute_by, "a compressed column cannot be the distribution column")
        _keys_include(cls, distribute_by, key, unique_keys, "distribution")
    return Placement(
        partitioning=partition_by
        if isinstance(partition_by, (RangePartitioning, ListPartitioning))
        else None,
        ranges=ranges,
        column_type=ctype,
        tablespace=tablespace,
        index_tablespace=index_tablespace,
        distribute_by=distribute_by,
        colocate_with=colocated,
        reference=bool(reference),
        require_distribution=bool(require_distribution),
    )


def _colocated(cls: type, colocate_with: object) -> str | None:
    if colocate_with is None or isinstance(colocate_with, str):
        return colocate_with
    meta = (
        getattr(colocate_with, "__orso_table__", None) if isinstance(colocate_with, type) else None
    )
    if meta is None:
        _fail(
            cls, None, f"colocate_with= takes a model class or a table name, not {colocate_with!r}"
        )
    return str(meta.name)
