"""QueryBuilder compiled to SQL text and parameters, without a database."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from orso_pg import (
    Aggregate,
    DefinitionError,
    Filter,
    JoinType,
    QueryBuilder,
    QueryError,
    Sort,
    ValidationError,
    column,
    table,
)
from tests.helpers import assert_sql


@table("uq_candles")
class Candle:
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    close: float
    volume: int = 0


@table("uq_symbols")
class Symbol:
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    sector: str


@table("uq_sectors")
class Sector:
    id: int | None = column(primary_key=True, default=None)
    sector: str
    region: str


ALL = '"id", "symbol", "close", "volume"'


def test_select_everything() -> None:
    """A bare builder selects every model column from the model's table."""
    assert_sql(QueryBuilder(Candle).build(), f'SELECT {ALL} FROM "uq_candles"', ())
    assert_sql(QueryBuilder.new("uq_candles").build(), f'SELECT {ALL} FROM "uq_candles"', ())
    assert QueryBuilder(Candle).selects_model


def test_select_columns_where_order_limit_offset() -> None:
    """Columns, several ANDed wheres, sorts, limit and offset, parameters in order."""
    q = (
        QueryBuilder(Candle)
        .select("symbol", "close")
        .where(Filter.gt("close", 10) | Filter.is_null("symbol"))
        .with_filter(Filter.in_values("volume", [1, 2]))
        .order_by(Sort.desc("close", nulls="last"), Sort.asc("id"))
        .limit(5)
        .offset(10)
    )
    assert_sql(
        q.build(),
        'SELECT "symbol", "close" FROM "uq_candles" WHERE (("close" > %s OR "symbol" IS NULL))'
        ' AND ("volume" = ANY(%b::BIGINT[])) ORDER BY "close" DESC NULLS LAST, "id" ASC'
        " LIMIT %s OFFSET %s",
        (10.0, [1, 2], 5, 10),
    )
    assert not q.selects_model
    assert [name for name, _, _ in q.output_columns()] == ["symbol", "close"]


def test_limit_zero_and_offset_zero() -> None:
    """limit(0) is kept (no rows) and offset(0) is left out."""
    assert_sql(
        QueryBuilder(Candle).limit(0).offset(0).build(),
        f'SELECT {ALL} FROM "uq_candles" LIMIT %s',
        (0,),
    )


def test_distinct_and_select_all() -> None:
    """distinct() adds DISTINCT; select_all() drops a previous selection."""
    q = QueryBuilder(Candle).select("symbol").distinct()
    assert_sql(q.build(), 'SELECT DISTINCT "symbol" FROM "uq_candles"', ())
    assert_sql(q.select_all().distinct(on=False).build(), f'SELECT {ALL} FROM "uq_candles"', ())


def test_group_by_having_aggregates() -> None:
    """Aggregates, GROUP BY and a HAVING on an aggregate's alias, which resolves to it."""
    q = (
        QueryBuilder(Candle)
        .select("symbol")
        .aggregate(Aggregate.AVG, "close", "avg_close")
        .aggregate(Aggregate.MAX, "volume")
        .select_count()
        .group_by("symbol")
        .having(Filter.gt("avg_close", 10) & Filter.ge("count", 2))
        .order_by(Sort.desc("avg_close"))
    )
    assert_sql(
        q.build(),
        'SELECT "symbol", avg("close") AS "avg_close", max("volume") AS "max_volume",'
        ' count(*) AS "count" FROM "uq_candles" GROUP BY "symbol"'
        ' HAVING (avg("close") > %s AND count(*) >= %s) ORDER BY avg("close") DESC',
        (10, 2),
    )
    names = [name for name, _, _ in q.output_columns()]
    assert names == ["symbol", "avg_close", "max_volume", "count"]


def test_joins() -> None:
    """Joins on column pairs qualify every column; aliases and join kinds apply."""
    q = (
        QueryBuilder(Candle)
        .join(Symbol, ("symbol", "symbol"))
        .join(Sector, [("uq_symbols.sector", "sector")], JoinType.LEFT, alias="s")
        .select("symbol", "s.region")
        .where(Filter.eq("s.region", "EU"))
        .order_by(Sort.asc("uq_symbols.sector"))
    )
    assert_sql(
        q.build(),
        'SELECT "uq_candles"."symbol", "s"."region" FROM "uq_candles"'
        ' INNER JOIN "uq_symbols" ON "uq_candles"."symbol" = "uq_symbols"."symbol"'
        ' LEFT JOIN "uq_sectors" AS "s" ON "uq_symbols"."sector" = "s"."sector"'
        ' WHERE "s"."region" = %s ORDER BY "uq_symbols"."sector" ASC',
        ("EU",),
    )


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (JoinType.INNER, "INNER JOIN"),
        (JoinType.LEFT, "LEFT JOIN"),
        (JoinType.RIGHT, "RIGHT JOIN"),
        (JoinType.FULL, "FULL JOIN"),
    ],
)
def test_join_kinds(kind: JoinType, text: str) -> None:
    """Every join kind renders its keyword."""
    q = QueryBuilder(Candle).join(Symbol, ("symbol", "symbol"), kind)
    assert f' {text} "uq_symbols" ON ' in q.build().as_string()


def test_join_on_other_table_name() -> None:
    """A join may read another table of the joined model's shape."""
    q = QueryBuilder(Candle).join(Symbol, ("symbol", "symbol"), table_name="symbols_2024")
    assert 'INNER JOIN "symbols_2024" ON "uq_candles"."symbol" = "symbols_2024"."symbol"' in (
        q.build().as_string()
    )


def test_with_table_name() -> None:
    """table_name reads another table with the model's columns."""
    q = QueryBuilder(Candle, "candles_2024").where(Filter.eq("symbol", "a"))
    assert_sql(q.build(), f'SELECT {ALL} FROM "candles_2024" WHERE "symbol" = %s', ("a",))


def test_builder_is_immutable() -> None:
    """Every method returns a new builder; the base is unchanged and can be shared."""
    base = QueryBuilder(Candle).where(Filter.gt("close", 1))
    refined = base.where(Filter.lt("close", 2)).limit(3)
    assert base.build().params == (1.0,)
    assert refined.build().params == (1.0, 2.0, 3)


def test_count_statement() -> None:
    """build_count wraps the query without ORDER BY, LIMIT or OFFSET."""
    q = QueryBuilder(Candle).where(Filter.gt("close", 1)).order_by(Sort.asc("id")).limit(2)
    assert_sql(
        q.build_count(),
        f'SELECT count(*) FROM (SELECT {ALL} FROM "uq_candles" WHERE "close" > %s) AS q',
        (1.0,),
    )


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: QueryBuilder(Candle).select("nope"), "columns are: id, symbol, close, volume"),
        (lambda: QueryBuilder(Candle).where(Filter.eq("nope", 1)), "has no column 'nope'"),
        (lambda: QueryBuilder(Candle).group_by("nope"), "has no column"),
        (lambda: QueryBuilder(Candle).order_by(Sort.asc("nope")), "has no column"),
        (lambda: QueryBuilder(Candle).having(Filter.gt("avg_close", 1)), "has no column"),
        (lambda: QueryBuilder(Candle).select("other.symbol"), "names no table of this query"),
        (lambda: QueryBuilder(Candle).aggregate(Aggregate.SUM, "*"), r"sum\(\*\) is not"),
        (
            lambda: QueryBuilder(Candle).join(Symbol, ("symbol", "nope")),
            "Symbol has no column 'nope'",
        ),
        (lambda: QueryBuilder(Candle).join(Symbol, []), "needs at least one"),
    ],
    ids=["select", "where", "group", "order", "having", "prefix", "sum", "join", "join-empty"],
)
def test_unknown_names_fail_at_build(make: object, match: str) -> None:
    """Unknown columns, tables and aggregates are QueryErrors before any SQL exists."""
    with pytest.raises(QueryError, match=match):
        make().build()  # type: ignore[operator]


@pytest.mark.parametrize(
    "make",
    [
        lambda: QueryBuilder(Candle).limit(-1),
        lambda: QueryBuilder(Candle).offset(-1),
        lambda: QueryBuilder(Candle).limit(True),  # noqa: FBT003
        lambda: QueryBuilder(Candle).limit("5"),  # type: ignore[arg-type]
        lambda: QueryBuilder(Candle).aggregate("sum", "close"),  # type: ignore[arg-type]
        lambda: QueryBuilder(Candle).aggregate(Aggregate.SUM, "close", ""),
        lambda: QueryBuilder(Candle).join(Symbol, "symbol"),  # type: ignore[arg-type]
        lambda: QueryBuilder(Candle).join(Symbol, [("symbol",)]),  # type: ignore[list-item]
        lambda: QueryBuilder(Candle).join(Symbol, ("symbol", "symbol"), "left"),  # type: ignore[arg-type]
        lambda: QueryBuilder("no_such_table"),
    ],
    ids=[
        "limit-negative",
        "offset-negative",
        "limit-bool",
        "limit-str",
        "aggregate-str",
        "alias-empty",
        "join-str",
        "join-short-pair",
        "join-kind-str",
        "unknown-table",
    ],
)
def test_bad_arguments(make: object) -> None:
    """Bad limits, aggregates, join pairs and table names are refused when given."""
    with pytest.raises(QueryError):
        make()  # type: ignore[operator]


@pytest.mark.parametrize("name", ["", "a\x00b", "x" * 64, 5])
def test_bad_table_names(name: object) -> None:
    """A table name that cannot be an identifier is a ValidationError."""
    with pytest.raises(ValidationError):
        QueryBuilder(Candle, name)
    with pytest.raises(ValidationError):
        QueryBuilder(Candle).join(Symbol, ("symbol", "symbol"), table_name=name)  # type: ignore[arg-type]


def test_not_a_model() -> None:
    """A class that is not a model is refused."""
    with pytest.raises(DefinitionError):
        QueryBuilder(int)


def test_hostile_names_stay_identifiers() -> None:
    """Aliases and table names with quotes are quoted identifiers, never SQL."""
    evil = 'x"; DROP TABLE uq_candles; --'
    q = QueryBuilder(Candle, evil).aggregate(Aggregate.COUNT, "*", evil)
    assert q.build().as_string() == (
        'SELECT count(*) AS "x""; DROP TABLE uq_candles; --" FROM "x""; DROP TABLE uq_candles; --"'
    )


# --- properties -------------------------------------------------------------------------------

NUMBERS = st.one_of(st.integers(-5, 5), st.floats(allow_nan=False, width=32))
WHERES = st.lists(
    st.one_of(
        st.builds(Filter.gt, st.just("close"), NUMBERS),
        st.builds(Filter.le, st.just("volume"), st.integers(-5, 5)),
        st.builds(Filter.in_values, st.just("volume"), st.lists(st.integers(0, 9), max_size=4)),
        st.builds(
            Filter.like,
            st.just("symbol"),
            # Patterns PostgreSQL can store: no NUL, no lone surrogates (both refused earlier).
            st.text(
                st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=4
            ),
        ),
        st.builds(Filter.raw, st.just(sql.SQL("%s < 5")), st.tuples(st.integers())),
    ),
    max_size=4,
)


@settings(max_examples=100, deadline=None)
@given(WHERES, WHERES, st.none() | st.integers(0, 100), st.none() | st.integers(0, 100))
def test_placeholders_match_params(
    wheres: list[Filter], havings: list[Filter], limit: int | None, offset: int | None
) -> None:
    """WHERE, HAVING, LIMIT and OFFSET parameters line up with their placeholders."""
    q = QueryBuilder(Candle).select("symbol").select_count().group_by("symbol")
    for w in wheres:
        q = q.where(w)
    for h in havings:
        q = q.having(h)
    if limit is not None:
        q = q.limit(limit)
    if offset is not None:
        q = q.offset(offset)
    for stmt in (q.build(), q.build_count(), q.limit(3).offset(4).build()):
        assert len(re.findall("%[sb]", stmt.as_string())) == len(stmt.params)
