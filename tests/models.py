"""Models covering every type orso_pg maps, for the round-trip and strategy tests.

Between them they hold one column of every supported annotation, each column option that
changes what a valid value is (``sql_type``, ``compress``, ``decimals``, generated keys and
timestamps, server defaults, unique and composite keys), and a nullable twin of each type.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg import sql

from orso_pg import Index, Orso, column, table


class Side(enum.Enum):
    """An enum stored by value (every value is a str)."""

    BUY = "buy"
    SELL = "sell"


class Level(enum.Enum):
    """An enum stored by name (its values are ints)."""

    LOW = 1
    HIGH = 2


@table("rt_scalars")
class Scalars(Orso):
    """One non-null column of every scalar type, an identity key and both timestamps."""

    id: int | None = column(primary_key=True, default=None)
    text: str
    number: int
    real: float
    flag: bool
    at: dt.datetime
    day: dt.date
    clock: dt.time
    span: dt.timedelta
    amount: Decimal
    ident: uuid.UUID
    blob: bytes
    doc: dict[str, Any]
    counts: dict[str, int]
    anything: Any
    rows: list[dict[str, Any]]
    side: Side
    level: Level
    created_at: dt.datetime | None = column(created_at=True, default=None)
    updated_at: dt.datetime | None = column(updated_at=True, default=None)


@table("rt_nullable")
class Nullable(Orso):
    """The nullable twin of every scalar type, behind a UUID key."""

    id: uuid.UUID | None = column(primary_key=True, default=None)
    text: str | None = None
    number: int | None = None
    real: float | None = None
    flag: bool | None = None
    at: dt.datetime | None = None
    day: dt.date | None = None
    clock: dt.time | None = None
    span: dt.timedelta | None = None
    amount: Decimal | None = None
    ident: uuid.UUID | None = None
    blob: bytes | None = None
    doc: dict[str, Any] | None = None
    side: Side | None = None
    level: Level | None = None
    status: str | None = column(server_default="new", default=None)


@table("rt_arrays")
class Arrays(Orso):
    """Native PostgreSQL arrays: lists of each element type and numpy arrays of each dtype."""

    id: str | None = column(primary_key=True, default=None)
    ints: list[int]
    floats: list[float]
    texts: list[str]
    flags: list[bool]
    amounts: list[Decimal]
    idents: list[uuid.UUID]
    days: list[dt.date]
    stamps: list[dt.datetime]
    holes: list[int | None]
    maybe: list[float] | None
    i64: npt.NDArray[np.int64]
    i32: npt.NDArray[np.int32]
    i16: npt.NDArray[np.int16]
    f64: npt.NDArray[np.float64]
    f32: npt.NDArray[np.float32]
    bools: npt.NDArray[np.bool_]


@table("rt_compressed")
class Compressed(Orso):
    """Compressed arrays: any ndarray, list[int], list[float], lossy ones and a nullable one."""

    id: int | None = column(primary_key=True, default=None)
    values: np.ndarray = column(compress=True, eq=False)
    ticks: list[int] = column(compress=True)
    prices: list[float] = column(compress=True)
    cents: np.ndarray = column(compress=True, decimals=2, eq=False)
    rounded: list[float] = column(compress=True, decimals=4)
    spare: np.ndarray | None = column(compress=True, default=None, eq=False)


@table("rt_narrowed")
class Narrowed(Orso):
    """Columns whose ``sql_type`` narrows what the annotation alone would allow."""

    id: int | None = column(primary_key=True, default=None)
    code: str = column(sql_type="varchar(12)")
    iso: str = column(sql_type="char(3)")
    money: Decimal = column(sql_type="numeric(12, 2)")
    whole: Decimal = column(sql_type="numeric(6)")
    small: int = column(sql_type="smallint")
    medium: int = column(sql_type="integer")
    bounded: int = column(sql_type="numeric(5, 0)")
    single: float = column(sql_type="real")
    token: str = column(sql_type="uuid")
    plain: dict[str, Any] = column(sql_type="json")
    tags: list[str] = column(sql_type="varchar(5)[]")
    stamp: dt.datetime = column(sql_type="timestamp with time zone")
    moment: dt.datetime = column(sql_type="timestamptz(3)")
    clock: dt.time = column(sql_type="time(0)")
    span: dt.timedelta = column(sql_type="interval(2)")
    label: str = column(server_default=sql.SQL("'none'"), default="none")


@table("rt_keyed", unique=[("venue", "seq")], indexes=[Index(("ratio",), unique=True)])
class Keyed(Orso):
    """A natural key, a unique column, a composite unique key and a unique index."""

    symbol: str = column(primary_key=True)
    isin: str | None = column(unique=True, default=None)
    venue: str = column(sql_type="varchar(2)")
    seq: int = column(sql_type="smallint")
    ratio: float = 0.0


@table("rt_orders")
class Order(Orso):
    """A model with a foreign key to :class:`Keyed`."""

    id: int | None = column(primary_key=True, default=None)
    symbol: str | None = column(ref=Keyed, default=None)
    qty: int = 0


EVERY_MODEL: tuple[type[Orso], ...] = (Scalars, Nullable, Arrays, Compressed, Narrowed, Keyed)


@table("rt_broken")
class Broken(Orso):
    """Deliberately broken: its SQL types are domains whose CHECKs the strategies cannot see.

    The tests create ``short_code`` (text of at most 3 characters) and ``positive_qty`` (a
    bigint above 0); drawn instances violate them, and hypothesis must shrink to the boundary.
    """

    id: int | None = column(primary_key=True, default=None)
    code: str = column(sql_type="short_code")
    qty: int = column(sql_type="positive_qty")
