"""Partitioning, tablespace and Citus declarations: checks, arithmetic and SQL (no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from orso_pg import DefinitionError, Orso, PartitionInfo, column, partition, table, table_of
from orso_pg._partition import Ranges, partition_name, value_suffix
from orso_pg._partitions import _column_values, _info, wanted
from orso_pg.batch import _sql as batch_sql
from orso_pg.migrate import _ddl as ddl
from orso_pg.migrate import _placement as placement


def _model(**options: Any) -> Any:
    """Declare a trade model with *options* on @table."""
    options.setdefault("primary_key", ("symbol", "ts"))

    @table("u_trades", **options)
    class Trade(Orso):
        symbol: str
        ts: datetime
        price: float
        note: str | None = None
        at: datetime | None = column(created_at=True, default=None)

    return Trade


def test_partition_declarations_read_as_they_are_written() -> None:
    """partition.range and partition.list return plain values with the strategy."""
    spec = partition.range("ts", every="1 hour")
    assert (spec.column, spec.every, spec.default, spec.strategy) == (
        "ts",
        "1 hour",
        False,
        "RANGE",
    )
    listed = partition.list("symbol", default=True)
    assert (listed.column, listed.default, listed.strategy) == ("symbol", True, "LIST")
    assert repr(partition) == "orso_pg.partition"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"primary_key": ("symbol",)}, r"primary key \(symbol\) must include the partition column"),
        ({"unique": [("symbol", "price")]}, r"unique key \(symbol, price\) must include"),
        ({"partition_by": partition.range("nope")}, "unknown field 'nope'"),
        ({"partition_by": partition.range("symbol")}, "datetime, date or int column"),
        ({"partition_by": partition.list("price")}, "str, int, bool, date or enum"),
        ({"partition_by": partition.range("ts", every="1 fortnight")}, "not a time width"),
        ({"partition_by": partition.range("ts", every=5)}, "not a time width"),
        ({"partition_by": partition.range("ts", every="0 days")}, "at least 1 day"),
        ({"partition_by": partition.range("at")}, "filled by the server"),
        ({"partition_by": "ts"}, "partition.range"),
        ({"tablespace": ""}, "takes a tablespace name"),
        ({"index_tablespace": "x" * 70}, "is 70 bytes"),
        ({"distribute_by": "nope"}, "distribute_by names unknown field"),
        ({"distribute_by": "price"}, r"primary key \(symbol, ts\) must include the distribution"),
        ({"reference": True, "distribute_by": "symbol"}, "not both"),
        ({"colocate_with": "other"}, "colocate_with= needs distribute_by="),
        ({"require_distribution": True}, "needs distribute_by= or reference=True"),
        ({"distribute_by": "symbol", "colocate_with": 5}, "model class or a table name"),
    ],
)
def test_bad_declarations_fail_at_decoration(options: dict[str, Any], message: str) -> None:
    """Every declaration that cannot work is a DefinitionError saying how to fix it."""
    options.setdefault("partition_by", partition.range("ts", every="1 day"))
    if options["partition_by"] is None:
        del options["partition_by"]
    with pytest.raises(DefinitionError, match=message):
        _model(**options)


def test_more_bad_declarations() -> None:
    """Column types and nullability the partitioning cannot hold."""
    with pytest.raises(DefinitionError, match="accepts None"):

        @table("u_null", partition_by=partition.range("ts"))
        class Nullable(Orso):
            ts: datetime | None = None

    @table("u_null_ok", partition_by=partition.range("ts", default=True))
    class NullableWithDefault(Orso):
        ts: datetime | None = None

    with pytest.raises(DefinitionError, match="cannot be partitioned by hours"):

        @table("u_day", partition_by=partition.range("day", every="1 hour"))
        class Daily(Orso):
            day: date

    with pytest.raises(DefinitionError, match="positive int width"):

        @table("u_seq", partition_by=partition.range("seq", every="1 day"))
        class Seq(Orso):
            seq: int

    with pytest.raises(DefinitionError, match="compressed column cannot be the distribution"):

        @table("u_comp", distribute_by="data")
        class Compressed(Orso):
            data: list[int] = column(compress=True)


def test_the_ddl_of_a_partitioned_table_in_tablespaces() -> None:
    """PARTITION BY, TABLESPACE and USING INDEX TABLESPACE on keys and indexes."""
    trade = _model(
        partition_by=partition.range("ts", every="1 day"),
        tablespace="hot",
        index_tablespace="fast",
        unique=[("symbol", "ts", "price")],
        indexes=[("price",)],
    )
    meta = table_of(trade)
    text = ddl.create_table(meta).as_string()
    assert text.endswith(
        'PRIMARY KEY ("symbol", "ts") USING INDEX TABLESPACE "fast", '
        'UNIQUE ("symbol", "ts", "price") USING INDEX TABLESPACE "fast") '
        'PARTITION BY RANGE ("ts") TABLESPACE "hot"'
    )
    assert ddl.create_index(meta, meta.indexes[0], name="i").as_string() == (
        'CREATE INDEX "i" ON "u_trades" USING btree ("price") TABLESPACE "fast"'
    )
    listed = _model(partition_by=partition.list("symbol"))
    assert ddl.create_table(table_of(listed)).as_string().endswith(' PARTITION BY LIST ("symbol")')

    @table("u_one", index_tablespace="fast")
    class One(Orso):
        id: int | None = column(primary_key=True, default=None)

    assert ddl.create_table(table_of(One)).as_string() == (
        'CREATE TABLE "u_one" ("id" BIGINT GENERATED BY DEFAULT AS IDENTITY NOT NULL, '
        'PRIMARY KEY ("id") USING INDEX TABLESPACE "fast")'
    )


def test_the_partition_statements() -> None:
    """A partition is made LIKE its parent then attached; bounds are literals."""
    trade = _model(partition_by=partition.range("ts", every="1 day"), tablespace="hot")
    found = wanted(table_of(trade), None, [datetime(2024, 3, 1, 5, tzinfo=UTC)])
    assert [w.name for w in found] == ["u_trades_p20240301"]
    parent, child = sql.Identifier("s", "u_trades"), sql.Identifier("s", "c")
    assert placement.create_like(parent, child, "hot").as_string() == (
        'CREATE TABLE IF NOT EXISTS "s"."c" (LIKE "s"."u_trades" INCLUDING CONSTRAINTS '
        'INCLUDING GENERATED) TABLESPACE "hot"'
    )
    assert placement.attach_partition(parent, child, found[0].bound).as_string() == (
        'ALTER TABLE "s"."u_trades" ATTACH PARTITION "s"."c" FOR VALUES FROM '
        "('2024-03-01 00:00:00+00:00'::timestamptz) TO ('2024-03-02 00:00:00+00:00'::timestamptz)"
    )
    assert placement.create_default_partition(parent, child, None).as_string() == (
        'CREATE TABLE IF NOT EXISTS "s"."c" PARTITION OF "s"."u_trades" DEFAULT'
    )
    assert placement.move_table(child, "cold").as_string() == (
        'ALTER TABLE "s"."c" SET TABLESPACE "cold"'
    )
    assert placement.move_index(child, "cold").as_string() == (
        'ALTER INDEX "s"."c" SET TABLESPACE "cold"'
    )
    listed = _model(partition_by=partition.list("symbol"))
    found = wanted(table_of(listed), None, ["BTC", "BTC", "it's", None])
    assert [(w.name, w.bound.as_string(None)) for w in found] == [
        ("u_trades_pBTC", "FOR VALUES IN ('BTC')"),
        ("u_trades_p" + value_suffix("it's"), "FOR VALUES IN ('it''s')"),
    ]
    naive = datetime(2024, 1, 1)  # noqa: DTZ001 - refused, so no partition for it
    assert wanted(table_of(trade), None, [None, "not a time", naive]) == []


def test_the_citus_sql_is_exact() -> None:
    """create_distributed_table (co-located or not) and create_reference_table."""

    @table("u_instruments", reference=True)
    class Instrument(Orso):
        symbol: str = column(primary_key=True)

    @table("u_orders", primary_key=("symbol", "id"), distribute_by="symbol")
    class Order(Orso):
        symbol: str
        id: int

    @table(
        "u_fills",
        primary_key=("symbol", "ts"),
        partition_by=partition.range("ts", every="1 day"),
        distribute_by="symbol",
        colocate_with=Order,
        require_distribution=True,
    )
    class Fill(Orso):
        symbol: str
        ts: datetime

    assert placement.distribute(table_of(Instrument), '"u_instruments"').as_string() == (
        "SELECT create_reference_table('\"u_instruments\"')"
    )
    assert placement.distribute(table_of(Order), '"s"."u_orders"').as_string() == (
        "SELECT create_distributed_table('\"s\".\"u_orders\"', 'symbol')"
    )
    assert placement.distribute(table_of(Fill), '"u_fills"').as_string() == (
        "SELECT create_distributed_table('\"u_fills\"', 'symbol', colocate_with => 'u_orders')"
    )
    meta = table_of(Fill).placement
    assert (meta.distributed, meta.require_distribution, meta.colocate_with) == (
        True,
        True,
        "u_orders",
    )


def u(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """Return a UTC datetime."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


EAST = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("every", "value", "name", "lower", "upper"),
    [
        ("1 hour", u(2024, 3, 1, 5, 30), "t_p2024030105", u(2024, 3, 1, 5), u(2024, 3, 1, 6)),
        ("1 day", u(2024, 3, 1, 23, 59), "t_p20240301", u(2024, 3, 1), u(2024, 3, 2)),
        ("7 days", u(1970, 1, 9), "t_p19700108", u(1970, 1, 8), u(1970, 1, 15)),
        ("1 week", u(2024, 3, 1), "t_p20240226", u(2024, 2, 26), u(2024, 3, 4)),
        ("1 month", u(2024, 12, 31, 23), "t_p202412", u(2024, 12, 1), u(2025, 1, 1)),
        ("3 months", u(2024, 5, 5), "t_p202404", u(2024, 4, 1), u(2024, 7, 1)),
        ("1 year", u(2024, 5, 5), "t_p2024", u(2024, 1, 1), u(2025, 1, 1)),
        # An hour east of UTC: the range is the UTC day.
        (
            "1 day",
            datetime(2024, 3, 2, 0, 30, tzinfo=EAST),
            "t_p20240301",
            u(2024, 3, 1),
            u(2024, 3, 2),
        ),
    ],
)
def test_time_ranges(
    every: str, value: datetime, name: str, lower: datetime, upper: datetime
) -> None:
    """Ranges are aligned in UTC: hours and days on the epoch, weeks on Mondays."""
    trade = _model(partition_by=partition.range("ts", every=every))
    ranges = table_of(trade).placement.ranges
    assert ranges is not None
    key = ranges.key_of(value)
    assert ranges.keys([value]) == {key}
    assert partition_name("t", ranges.suffix(key)) == name
    assert ranges.lower(key) == lower
    assert ranges.upper(key) == upper


def test_date_and_int_ranges() -> None:
    """Date columns by days, weeks or months; int columns by a width."""
    by_week = Ranges("date", "week", 1)
    key = by_week.key_of(date(2024, 3, 1))
    assert (by_week.lower(key), by_week.upper(key)) == (date(2024, 2, 26), date(2024, 3, 4))
    assert by_week.keys([date(2024, 3, 1), date(2024, 3, 3), datetime(2024, 3, 1, tzinfo=UTC)]) == {
        key
    }
    by_year = Ranges("date", "year", 1)
    assert by_year.lower(by_year.key_of(date(2024, 7, 1))) == date(2024, 1, 1)
    width = Ranges("int", None, 100)
    assert width.keys([-1, 0, 99, 100, True, "x"]) == {-1, 0, 1}
    assert (width.lower(-1), width.upper(-1), width.suffix(-1)) == (-100, 0, "m100")
    assert list(width.between(0, 200)) == [0, 1]
    assert list(width.between(0, 201)) == [0, 1, 2]


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),  # noqa: DTZ001 - hypothesis adds the zone
        max_value=datetime(2200, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    st.sampled_from(
        ["1 hour", "6 hours", "1 day", "3 days", "1 week", "1 month", "2 months", "1 year"]
    ),
)
def test_every_value_falls_in_its_range(value: datetime, every: str) -> None:
    """lower(key) <= value < upper(key), and the bulk path finds the same key."""
    trade = _model(partition_by=partition.range("ts", every=every))
    ranges = table_of(trade).placement.ranges
    assert ranges is not None
    key = ranges.key_of(value)
    assert ranges.lower(key) <= value < ranges.upper(key)
    assert ranges.keys([value]) == {key}
    assert list(ranges.between(ranges.lower(key), ranges.upper(key))) == [key]


def test_names_fit_and_values_are_spelled_safely() -> None:
    """Long names are shortened with a hash; odd list values become a hash."""
    long = partition_name("t" * 60, "20240301")
    assert len(long.encode()) == 63
    assert long != partition_name("t" * 60, "20240302")
    assert value_suffix("BTC") == "BTC"
    assert value_suffix(True)  # noqa: FBT003 == "true"
    assert value_suffix(date(2024, 1, 2)) == "20240102"
    assert value_suffix("a b").startswith("h")
    assert value_suffix("a b") != value_suffix("a c")


def test_partition_bounds_read_back() -> None:
    """pg_get_expr's bound text becomes PartitionInfo values."""
    trade = _model(partition_by=partition.range("ts", every="1 day")).__orso_table__
    info = _info(
        trade,
        "p",
        "FOR VALUES FROM ('2024-03-01 01:00:00+01') TO (MAXVALUE)",
        -1.0,
        None,
    )
    assert info == PartitionInfo(
        "p", lower=datetime(2024, 3, 1, tzinfo=UTC), upper=None, rows=None, tablespace=None
    )
    assert _info(trade, "d", "DEFAULT", 12.0, "cold") == PartitionInfo(
        "d", default=True, rows=12, tablespace="cold"
    )
    listed = _model(partition_by=partition.list("symbol")).__orso_table__
    assert _info(listed, "l", "FOR VALUES IN ('it''s', 'b')", 0.0, None).values == ("it's", "b")


def test_the_fast_and_careful_paths_find_the_same_ranges() -> None:
    """Chunks in UTC, in another zone, with gaps of other types, and plain rows."""
    meta = table_of(_model(partition_by=partition.range("ts", every="1 day")))
    ranges = meta.placement.ranges
    assert ranges is not None
    east = [datetime(2024, 3, 2, 0, 30, tzinfo=EAST), datetime(2024, 3, 2, 1, 30, tzinfo=EAST)]
    both_days = {ranges.key_of(u(2024, 3, 1)), ranges.key_of(u(2024, 3, 2))}
    assert ranges.fast_keys(east) == ranges.keys(east) == both_days
    assert ranges.fast_keys([u(2024, 3, 1), None]) is None
    mixed: list[Any] = [u(2024, 3, 1), None, "2024-03-05", u(2024, 3, 2)]
    assert [w.name for w in wanted(meta, None, mixed)] == [
        "u_trades_p20240301",
        "u_trades_p20240302",
    ]
    by_date = Ranges("date", "month", 1)
    assert by_date.fast_keys([date(2024, 1, 5), date(2024, 2, 5)]) == {24288, 24289}
    assert Ranges("int", None, 10).fast_keys([1, 15, 29]) == {0, 1, 2}
    rows: list[Any] = [("A", u(2024, 3, 1)), {"ts": u(2024, 3, 3)}, ("short",), 5]
    assert _column_values(meta, rows, ("symbol", "ts")) == [
        u(2024, 3, 1),
        u(2024, 3, 3),
        None,
        None,
    ]
    assert _column_values(meta, [object()], None) == [None]
    assert _column_values(meta, [("A",)], ("symbol",)) == []


def test_a_partitioned_upsert_counts_updates_without_xmax() -> None:
    """The staged upsert of a partitioned table counts updates in a setting it resets first."""
    meta = table_of(_model(partition_by=partition.range("ts", every="1 day")))
    stmt = batch_sql.upsert_from_stage(meta, None, ("symbol", "ts", "price"), ("symbol", "ts"))
    text = stmt.as_string()
    assert "xmax" not in text
    assert text.endswith(
        'DO UPDATE SET "price" = EXCLUDED."price" WHERE set_config(\'orso_pg.upsert_updated\', '
        "(current_setting('orso_pg.upsert_updated')::int8 + 1)::text, true) IS NOT NULL "
        "RETURNING 1) SELECT n - u, u FROM (SELECT count(*) AS n, "
        "current_setting('orso_pg.upsert_updated')::int8 AS u FROM ins) AS c"
    )
    assert [s.as_string() for s in stmt.settings] == [
        "SELECT set_config('orso_pg.upsert_updated', '0', true)"
    ]
    plain = table_of(_model(partition_by=None))
    stmt = batch_sql.upsert_from_stage(plain, None, ("symbol", "ts", "price"), ("symbol", "ts"))
    assert "xmax = 0" in stmt.as_string()
    assert stmt.settings == ()
