"""The benchmark's table as each library sees it: an orso_pg model, a plain attrs class, SQLAlchemy.

Owns the ``trades`` table definition shared by every implementation (the table of
``orm-peers.md``: ``id`` identity key, ``symbol``, ``ts``, ``price``, ``qty``, ``side``, a
nullable ``meta`` JSONB, an index on ``(symbol, ts)``) and the array tables of the compressed-array
workload. It must not run anything: workloads import these classes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt
from sqlalchemy import BigInteger, Column, DateTime, Float, Index, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from orso_pg import Orso, column, table

TRADES = "trades"
COLUMNS = ("id", "symbol", "ts", "price", "qty", "side", "meta")
DATA_COLUMNS = COLUMNS[1:]
COPY_TYPES = ("int8", "text", "timestamptz", "float8", "int8", "text", "jsonb")


@table(TRADES, indexes=[("symbol", "ts")], upsert_key=("id",))
class Trade(Orso):
    """orso_pg's model of the trades table; upserts conflict on the primary key (W2)."""

    id: int | None = column(primary_key=True, default=None)
    symbol: str
    ts: dt.datetime
    price: float
    qty: int
    side: str
    meta: dict[str, Any] | None = None


@attrs.define(slots=True)
class TradeRow:
    """What raw psycopg code builds from a row: a slotted attrs class, positional arguments."""

    id: int
    symbol: str
    ts: dt.datetime
    price: float
    qty: int
    side: str
    meta: dict[str, Any] | None


# --- compressed arrays against native arrays --------------------------------------------------

ARRAYS_NATIVE = "series_native"
ARRAYS_PACKED = "series_packed"


@table(ARRAYS_NATIVE)
class SeriesNative(Orso):
    """A 1,000-element int64 series per row, stored as a native BIGINT[]."""

    id: int
    points: npt.NDArray[np.int64]


@table(ARRAYS_PACKED)
class SeriesPacked(Orso):
    """The same series stored as an orso_pg codec frame in BYTEA."""

    id: int
    points: np.ndarray = column(compress=True)


# --- SQLAlchemy -------------------------------------------------------------------------------


class Base(DeclarativeBase):
    """SQLAlchemy's declarative base for the benchmark."""


class TradeORM(Base):
    """SQLAlchemy ORM mapping of the same table (JSONB None stored as SQL NULL)."""

    __tablename__ = TRADES
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    symbol: Mapped[str] = mapped_column(Text)
    ts: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    price: Mapped[float] = mapped_column(Float)
    qty: Mapped[int] = mapped_column(BigInteger)
    side: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True), nullable=True)


core_metadata = MetaData()
trades_core = Table(
    TRADES,
    core_metadata,
    Column("id", BigInteger, primary_key=True),
    Column("symbol", Text),
    Column("ts", DateTime(timezone=True)),
    Column("price", Float),
    Column("qty", BigInteger),
    Column("side", Text),
    Column("meta", JSONB(none_as_null=True), nullable=True),
    Index("trades_symbol_ts", "symbol", "ts"),
)
