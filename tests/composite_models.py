"""Natural-key market-data models for the composite primary key tests."""

from __future__ import annotations

from datetime import date, datetime

from orso_pg import ForeignKey, Orso, column, table


@table("cp_ticks", primary_key=("symbol", "ts"))
class Tick(Orso):
    """A trade print keyed by (symbol, ts): the key declared on the table."""

    symbol: str
    ts: datetime
    price: float
    qty: int = 0
    created_at: datetime | None = column(created_at=True, default=None)
    updated_at: datetime | None = column(updated_at=True, default=None)


@table("cp_daily")
class Daily(Orso):
    """A daily bar keyed by (venue, symbol, day): the key declared on the fields."""

    venue: str = column(primary_key=True)
    symbol: str = column(primary_key=True)
    day: date = column(primary_key=True)
    close: float
    volume: int = 0


@table("cp_instruments", primary_key=("venue", "symbol"))
class Instrument(Orso):
    """An instrument listed on a venue."""

    venue: str
    symbol: str
    name: str = ""


@table(
    "cp_listings",
    primary_key=("venue", "symbol", "day"),
    foreign_keys=[ForeignKey(("venue", "symbol"), Instrument)],
)
class Listing(Orso):
    """A trading day of an instrument: references it by its composite key."""

    venue: str
    symbol: str
    day: date
    status: str = "open"


@table(
    "cp_fills",
    foreign_keys=[ForeignKey(("venue", "symbol", "day"), Listing)],
)
class Fill(Orso):
    """A fill on a listing day: a generated single key, a composite foreign key."""

    id: int | None = column(primary_key=True, default=None)
    venue: str
    symbol: str
    day: date
    qty: int
