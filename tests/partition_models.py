"""Partitioned market-data models for the partition tests (and the two-process loader)."""

from __future__ import annotations

import enum
from datetime import date, datetime

from orso_pg import Orso, column, partition, table


@table(
    "pt_trades",
    primary_key=("symbol", "ts"),
    partition_by=partition.range("ts", every="1 day"),
    indexes=[("price",)],
)
class PTrade(Orso):
    """A trade keyed by (symbol, ts), one partition per UTC day."""

    symbol: str
    ts: datetime
    price: float
    qty: int = 0
    updated_at: datetime | None = column(updated_at=True, default=None)


@table("pt_plain_trades", primary_key=("symbol", "ts"))
class PlainTrade(Orso):
    """The same trade in a plain table."""

    symbol: str
    ts: datetime
    price: float
    qty: int = 0


class Venue(enum.Enum):
    """Where a quote comes from."""

    NYSE = "nyse"
    LSE = "lse"


@table(
    "pt_quotes",
    primary_key=("venue", "symbol", "ts"),
    partition_by=partition.list("venue", default=True),
)
class PQuote(Orso):
    """A quote, one partition per venue, and a DEFAULT partition."""

    venue: Venue
    symbol: str
    ts: datetime
    bid: float


@table(
    "pt_bars",
    primary_key=("symbol", "day"),
    partition_by=partition.range("day", every="1 month"),
)
class PBar(Orso):
    """A daily bar, one partition per month (a date column)."""

    symbol: str
    day: date
    close: float


@table("pt_seq", primary_key=("seq",), partition_by=partition.range("seq", every=1000))
class PSeq(Orso):
    """Rows numbered by a sequence number, 1,000 per partition."""

    seq: int
    note: str = ""


@table(
    "pt_fills",
    primary_key=("id", "ts"),
    partition_by=partition.range("ts", every="1 hour"),
)
class PFill(Orso):
    """A fill keyed by (id, ts) with a server-generated id, one partition per hour."""

    id: int | None = column(default=None)
    ts: datetime
    qty: int
