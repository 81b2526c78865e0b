"""Filters, sorts and search compiled to SQL text and parameters, without a database."""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from orso_pg import (
    Aggregate,
    Filter,
    QueryError,
    SearchFilter,
    Sort,
    SortOrder,
    ValidationError,
)
from orso_pg import _compiler as compiler
from orso_pg._compiler import Statement
from orso_pg._schema import column, table, table_of
from orso_pg.query._filters import (
    And,
    CompileContext,
    Condition,
    Not,
    Or,
    compile_filter,
    compile_sorts,
    escape_like,
    with_tiebreak,
)
from tests import filter_eval
from tests.helpers import assert_sql


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


@table("uf_trades")
class Trade:
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    price: float
    qty: int | None = None
    at: dt.datetime | None = None
    side: Side | None = None
    tags: list[int] | None = None
    doc: dict[str, Any] | None = None
    blob: np.ndarray | None = column(compress=True, default=None)
    code: str | None = column(sql_type="varchar(3)", default=None)


@table("uf_keyless")
class Keyless:
    name: str
    value: int


META = table_of(Trade)
UTC = dt.UTC


def where(f: Filter | None) -> Statement:
    query, params = compile_filter(META, "uf_trades", f)
    assert query is not None
    return Statement(query, params)


def placeholders(text: str) -> int:
    return len(re.findall(r"%[sb]", text))


# --- every operator ---------------------------------------------------------------------------

T0 = dt.datetime(2024, 5, 1, 12, tzinfo=UTC)

OPERATORS = [
    (Filter.eq("symbol", "BTC"), '"symbol" = %s', ("BTC",)),
    (Filter.ne("symbol", "BTC"), '"symbol" <> %s', ("BTC",)),
    (Filter.lt("price", 1.5), '"price" < %s', (1.5,)),
    (Filter.le("price", 2), '"price" <= %s', (2.0,)),
    (Filter.gt("qty", 3), '"qty" > %s', (3,)),
    (Filter.ge("at", T0), '"at" >= %s', (T0,)),
    (Filter.like("symbol", "B%"), '"symbol" LIKE %s', ("B%",)),
    (Filter.not_like("symbol", "B_"), '"symbol" NOT LIKE %s', ("B_",)),
    (Filter.ilike("symbol", "b%"), '"symbol" ILIKE %s', ("b%",)),
    (Filter.not_ilike("symbol", "b%"), '"symbol" NOT ILIKE %s', ("b%",)),
    (Filter.in_values("qty", [1, 2]), '"qty" = ANY(%b::BIGINT[])', ([1, 2],)),
    (Filter.not_in_values("qty", (3,)), '"qty" <> ALL(%b::BIGINT[])', ([3],)),
    (Filter.in_values("qty", []), '"qty" = ANY(%b::BIGINT[])', ([],)),
    (Filter.in_values("side", [Side.BUY, "sell"]), '"side" = ANY(%b::TEXT[])', (["buy", "sell"],)),
    (Filter.is_null("qty"), '"qty" IS NULL', ()),
    (Filter.is_not_null("qty"), '"qty" IS NOT NULL', ()),
    (Filter.between("price", 1, 2), '"price" BETWEEN %s AND %s', (1.0, 2.0)),
    (Filter.not_between("qty", 1, 2), '"qty" NOT BETWEEN %s AND %s', (1, 2)),
    (Filter.contains("tags", [1, 2]), '"tags" @> %s::BIGINT[]', ([1, 2],)),
    (Filter.overlaps("tags", (1, 2)), '"tags" && %s::BIGINT[]', ([1, 2],)),
    (Filter.any("tags", 7), '%s = ANY("tags")', (7,)),
    (Filter.has_key("doc", "k"), '"doc" ? %s', ("k",)),
    (Filter.json_eq("doc", "k", "v"), '"doc" ->> %s = %s', ("k", "v")),
    (Filter.json_eq("doc", "k", value=True), '"doc" ->> %s = %s', ("k", "true")),
    (Filter.json_eq("doc", "k", 5), '"doc" ->> %s = %s', ("k", "5")),
    (Filter.eq("tags", [1]), '"tags" = %s::BIGINT[]', ([1],)),
    (Filter.in_values("code", ["ABCDEF"]), '"code" = ANY(%s)', (["ABCDEF"],)),
    (Filter.eq("side", Side.SELL), '"side" = %s', ("sell",)),
]


@pytest.mark.parametrize(("f", "text", "params"), OPERATORS, ids=lambda x: repr(x)[:40])
def test_operator_sql(f: Filter, text: str, params: tuple[Any, ...]) -> None:
    """Each operator compiles to its SQL with the value bound, checked by the column type."""
    assert_sql(where(f), text, params)


def test_eq_none_is_null() -> None:
    """eq(col, None) means IS NULL and ne(col, None) means IS NOT NULL, not '= NULL'."""
    assert Filter.eq("qty", None) == Filter.is_null("qty")
    assert Filter.ne("qty", None) == Filter.is_not_null("qty")
    assert_sql(where(Filter.eq("qty", None)), '"qty" IS NULL', ())


def test_contains_on_json_binds_jsonb() -> None:
    """contains on a JSONB column binds the value as JSONB (no array cast)."""
    stmt = where(Filter.contains("doc", {"a": 1}))
    assert stmt.as_string() == '"doc" @> %s'
    assert type(stmt.params[0]).__name__ == "Jsonb"


def test_raw_escape_hatch() -> None:
    """Filter.raw takes psycopg.sql and parameters, parenthesised; a plain str is refused."""
    f = Filter.raw(sql.SQL("length({}) > %s").format(sql.Identifier("symbol")), [3])
    assert_sql(where(f & Filter.eq("qty", 1)), '((length("symbol") > %s) AND "qty" = %s)', (3, 1))
    with pytest.raises(QueryError, match=r"psycopg\.sql object"):
        Filter.raw("1 = 1")  # type: ignore[arg-type]


# --- combinations -----------------------------------------------------------------------------

A = Filter.eq("qty", 1)
B = Filter.eq("symbol", "x")
C = Filter.is_null("at")


@pytest.mark.parametrize(
    ("f", "text", "params"),
    [
        (A & B, '("qty" = %s AND "symbol" = %s)', (1, "x")),
        (A & B & C, '("qty" = %s AND "symbol" = %s AND "at" IS NULL)', (1, "x")),
        (A | B | C, '("qty" = %s OR "symbol" = %s OR "at" IS NULL)', (1, "x")),
        (A & (B | C), '("qty" = %s AND ("symbol" = %s OR "at" IS NULL))', (1, "x")),
        ((A & B) | C, '(("qty" = %s AND "symbol" = %s) OR "at" IS NULL)', (1, "x")),
        (~A, 'NOT ("qty" = %s)', (1,)),
        (~(A | B), 'NOT (("qty" = %s OR "symbol" = %s))', (1, "x")),
        (~~A, 'NOT (NOT ("qty" = %s))', (1,)),
        (Filter.all_of(), "TRUE", ()),
        (Filter.any_of(), "FALSE", ()),
        (Filter.all_of(A), '"qty" = %s', (1,)),
        (Filter.any_of(B), '"symbol" = %s', ("x",)),
        (Filter.and_(A, B), '("qty" = %s AND "symbol" = %s)', (1, "x")),
        (Filter.or_(A, B), '("qty" = %s OR "symbol" = %s)', (1, "x")),
        (Filter.negate(Filter.all_of()), "NOT (TRUE)", ()),
        (A.and_with(B).or_with(C), '(("qty" = %s AND "symbol" = %s) OR "at" IS NULL)', (1, "x")),
    ],
)
def test_combinations(f: Filter, text: str, params: tuple[Any, ...]) -> None:
    """&, |, ~ and orso's builders nest with parentheses and keep parameters in order."""
    assert_sql(where(f), text, params)


def test_and_flattens() -> None:
    """Chained & and | flatten into one n-ary node instead of nesting."""
    assert And((A, B, C)) == A & B & C
    assert Or((A, B, C)) == A | B | C
    assert Not(A) == ~A
    assert (
        repr(A & ~B) == "And(Condition('qty', 'eq', (1,)), Not(Condition('symbol', 'eq', ('x',))))"
    )


def test_combining_with_non_filter_fails() -> None:
    """& with something that is not a Filter is a TypeError, and all_of(None) a QueryError."""
    with pytest.raises(TypeError):
        _ = A & None  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = A | "qty = 1"  # type: ignore[operator]
    with pytest.raises(QueryError, match="NoneType"):
        where(Filter.all_of(A, None))  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="str"):
        where(Filter.negate("x"))  # type: ignore[arg-type]


def test_compile_filter_none_and_wrong_type() -> None:
    """No filter compiles to nothing; a non-filter is a QueryError."""
    assert compile_filter(META, "uf_trades", None) == (None, ())
    with pytest.raises(QueryError, match="expected a Filter"):
        compile_filter(META, "uf_trades", {"qty": 1})  # type: ignore[arg-type]


# --- refusals ---------------------------------------------------------------------------------


def test_unknown_column_names_the_columns() -> None:
    """An unknown column is a QueryError listing the model's columns."""
    with pytest.raises(
        QueryError, match="Trade has no column 'nope'; columns are: id, symbol"
    ) as e:
        where(Filter.eq("nope", 1))
    assert e.value.table == "uf_trades"
    assert e.value.column == "nope"
    with pytest.raises(QueryError, match="has no column"):
        where(A & ~Filter.in_values('x"; DROP TABLE uf_trades; --', [1]))


def test_column_name_must_be_str() -> None:
    """A column that is not a str is refused with a QueryError."""
    with pytest.raises(QueryError, match="must be a str"):
        where(Filter.eq(3, 1))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("f", "column", "value"),
    [
        (Filter.eq("qty", "3"), "qty", "3"),
        (Filter.eq("qty", 2**63), "qty", 2**63),
        (Filter.gt("at", dt.datetime(2024, 1, 1)), "at", dt.datetime(2024, 1, 1)),  # noqa: DTZ001
        (Filter.eq("symbol", "a\x00b"), "symbol", "a\x00b"),
        (Filter.like("symbol", "a\x00%"), "symbol", "a\x00%"),
        (Filter.in_values("qty", [1, "two"]), "qty", "two"),
        (Filter.in_values("qty", [1, True]), "qty", True),
        (Filter.in_values("qty", [1, 2**63]), "qty", 2**63),
        (Filter.not_in_values("qty", [-(2**63) - 1, 5]), "qty", -(2**63) - 1),
        (Filter.between("price", 1, "x"), "price", "x"),
        (Filter.eq("side", "hold"), "side", "hold"),
        (Filter.any("tags", "x"), "tags", ["x"]),
        (Filter.contains("tags", [1.5]), "tags", [1.5]),
        (Filter.has_key("doc", "k\x00"), "doc", "k\x00"),
    ],
)
def test_bad_values_are_validation_errors(f: Filter, column: str, value: object) -> None:
    """A value the column cannot hold is a ValidationError naming table, column and value."""
    with pytest.raises(ValidationError) as e:
        where(f)
    assert e.value.table == "uf_trades"
    assert e.value.column == column
    assert e.value.value == value
    assert "uf_trades" in str(e.value)


@pytest.mark.parametrize(
    ("f", "match"),
    [
        (Filter.like("qty", "1%"), "like needs a text column; uf_trades.qty is bigint"),
        (Filter.ilike("symbol", 5), "needs a str"),  # type: ignore[arg-type]
        (Filter.any("qty", 1), "any needs an array column"),
        (Filter.overlaps("doc", ["a"]), "overlaps needs an array column"),
        (Filter.contains("symbol", "a"), "contains needs an array or JSONB column"),
        (Filter.has_key("tags", "a"), "has_key needs a JSONB column"),
        (Filter.json_eq("symbol", "a", "b"), "json_eq needs a JSON or JSONB column"),
        (Filter.json_eq("doc", "a", None), "json_eq on uf_trades.doc compares"),  # type: ignore[arg-type]
        (Filter.json_eq("doc", "a", float("nan")), "json_eq on uf_trades.doc compares"),
        (Filter.in_values("tags", [[1]]), "needs a scalar column"),
        (Filter.eq("blob", b"x"), "compressed"),
        (Filter.like("blob", "x"), "is bytea"),
        (Condition("qty", "regex", (1,)), "unknown filter operator"),
    ],
)
def test_wrong_operator_for_column(f: Filter, match: str) -> None:
    """An operator that does not apply to the column's type is a QueryError before SQL runs."""
    with pytest.raises(QueryError, match=match):
        where(f)


@pytest.mark.parametrize("values", ["BTC", b"x", None, 5])
def test_list_operators_refuse_non_lists(values: object) -> None:
    """in_values/not_in_values/overlaps refuse a str (its letters) or a non-iterable."""
    for make in (Filter.in_values, Filter.not_in_values, Filter.overlaps):
        with pytest.raises(QueryError, match="needs a list of values"):
            make("symbol", values)  # type: ignore[arg-type]


def test_compressed_column_allows_null_checks() -> None:
    """A compressed column can still be tested for NULL."""
    assert_sql(where(Filter.is_null("blob")), '"blob" IS NULL', ())


# --- sorts ------------------------------------------------------------------------------------


def order(*sorts: Sort) -> str:
    result = compile_sorts(CompileContext(meta=META, table="uf_trades"), sorts)
    assert result is not None
    return result.as_string(None)


def test_sorts() -> None:
    """Sorts compile to ORDER BY terms with directions and NULLS placement."""
    assert order(Sort.asc("price")) == '"price" ASC'
    assert order(Sort.desc("price"), Sort.asc("id")) == '"price" DESC, "id" ASC'
    assert order(Sort.asc("qty", nulls="first")) == '"qty" ASC NULLS FIRST'
    assert order(Sort.desc("qty", nulls="last")) == '"qty" DESC NULLS LAST'
    assert order(Sort.new("qty", SortOrder.DESC)) == '"qty" DESC'
    assert (
        order(Sort.new_bool("qty", ascending=True), Sort.new_bool("at", ascending=False))
        == '"qty" ASC, "at" DESC'
    )
    assert compile_sorts(CompileContext(meta=META, table="uf_trades"), []) is None


def test_sort_nulls_last_property() -> None:
    """nulls_last follows PostgreSQL's default (last ascending, first descending) unless set."""
    assert Sort.asc("qty").nulls_last
    assert not Sort.desc("qty").nulls_last
    assert not Sort.asc("qty", nulls="first").nulls_last
    assert Sort.desc("qty", nulls="last").nulls_last


def test_bad_sorts() -> None:
    """An unknown column, a bad nulls value or a non-Sort is a QueryError."""
    with pytest.raises(QueryError, match="columns are"):
        order(Sort.asc("price; DROP TABLE x"))
    with pytest.raises(QueryError, match="nulls must be"):
        order(Sort.asc("price", nulls="middle"))  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="expected a Sort"):
        order("price")  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="order must be SortOrder"):
        order(Sort("price", "desc"))  # type: ignore[arg-type]


def test_tiebreak() -> None:
    """The primary key ends every paginated sort once, and a keyless model gets none."""
    assert with_tiebreak(META, [Sort.desc("price")]) == (Sort.desc("price"), Sort.asc("id"))
    assert with_tiebreak(META, [Sort.desc("id")]) == (Sort.desc("id"),)
    assert with_tiebreak(META, []) == (Sort.asc("id"),)
    assert with_tiebreak(table_of(Keyless), [Sort.asc("name")]) == (Sort.asc("name"),)


# --- search -----------------------------------------------------------------------------------


def test_escape_like() -> None:
    r"""% and _ and \ are escaped so they match literally."""
    assert escape_like("50%_off\\now") == "50\\%\\_off\\\\now"
    assert escape_like("plain") == "plain"


@pytest.mark.parametrize(
    ("search", "text", "params"),
    [
        (SearchFilter.new("50%", ["symbol"]), '"symbol" ILIKE %s', ("%50\\%%",)),
        (
            SearchFilter.new("a_b", ["symbol", "side"]),
            '("symbol" ILIKE %s OR "side" ILIKE %s)',
            ("%a\\_b%", "%a\\_b%"),
        ),
        (
            SearchFilter.new_single_field("X", "symbol").with_case_sensitive(),
            '"symbol" LIKE %s',
            ("%X%",),
        ),
        (
            SearchFilter.new_single_field("x\\", "symbol").with_exact_match(),
            '"symbol" ILIKE %s',
            ("x\\\\",),
        ),
        (
            SearchFilter("x%", "symbol", case_sensitive=True, exact_match=True),
            '"symbol" = %s',
            ("x%",),
        ),
    ],
)
def test_search_filters(search: SearchFilter, text: str, params: tuple[Any, ...]) -> None:
    """Search is case-insensitive by default and matches %, _ and \\ literally."""
    assert_sql(where(search.to_filter()), text, params)


def test_search_refusals() -> None:
    """A search with no column, a non-text query or a non-text column is a QueryError."""
    with pytest.raises(QueryError, match="at least one column"):
        SearchFilter.new("x", []).to_filter()
    with pytest.raises(QueryError, match="must be a str"):
        SearchFilter.new(5, ["symbol"]).to_filter()  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="needs a text column"):
        where(SearchFilter.new("5", ["qty"]).to_filter())


# --- aggregates -------------------------------------------------------------------------------


def test_aggregate_names() -> None:
    """Aggregates render as SQL function names; orso's variant names are aliases."""
    assert Aggregate("sum") is Aggregate.SUM
    assert Aggregate.__members__["Sum"] is Aggregate.SUM
    plain = [a for a in Aggregate if a not in (Aggregate.FIRST, Aggregate.LAST)]
    assert [a.sql().as_string(None) for a in plain] == ["count", "sum", "avg", "min", "max"]
    # FIRST and LAST are no SQL function: they need the order QueryBuilder.aggregate takes.
    with pytest.raises(QueryError, match="order_by"):
        Aggregate.FIRST.sql()


# --- properties -------------------------------------------------------------------------------

VALUES = {
    "qty": filter_eval.ints(),
    "price": filter_eval.floats(),
    "symbol": filter_eval.texts(),
    "at": filter_eval.timestamps(),
}
FILTERS = filter_eval.trees(filter_eval.leaves(VALUES, text_columns=["symbol"]))


@settings(max_examples=100, deadline=None)
@given(FILTERS)
def test_placeholders_match_params(f: Filter) -> None:
    """Every random filter tree binds exactly one parameter per placeholder (%s or %b)."""
    stmt = where(f)
    assert placeholders(stmt.as_string()) == len(stmt.params)
    assert "%" not in re.sub(r"%[sb]", "", stmt.as_string())


def revalue(f: Filter, data: st.DataObject) -> Filter:
    """Return *f* with new values of the same kinds (and list lengths free to change)."""
    if isinstance(f, And):
        return And(tuple(revalue(i, data) for i in f.items))
    if isinstance(f, Or):
        return Or(tuple(revalue(i, data) for i in f.items))
    if isinstance(f, Not):
        return Not(revalue(f.item, data))
    assert isinstance(f, Condition)
    values = VALUES[f.column]
    if f.op in ("in", "not_in"):
        return Condition(f.column, f.op, (tuple(data.draw(st.lists(values, max_size=5))),))
    if f.op in ("like", "not_like", "ilike", "not_ilike"):
        return Condition(f.column, f.op, (data.draw(filter_eval.patterns()),))
    return Condition(f.column, f.op, tuple(data.draw(values) for _ in f.values))


@settings(max_examples=100, deadline=None)
@given(FILTERS, st.data())
def test_same_shape_same_text(f: Filter, data: st.DataObject) -> None:
    """Two filters of one shape compile to the same SQL text, whatever their values."""
    first = where(f)
    second = where(revalue(f, data))
    assert first.as_string() == second.as_string()
    assert len(first.params) == len(second.params)


# --- reuse of compiled SQL --------------------------------------------------------------------


def test_a_filter_shape_is_compiled_once_and_its_values_still_checked() -> None:
    """A second filter of the same shape gets the same SQL object and its own checked values."""
    first = where(Filter.eq("qty", 1) & Filter.between("price", 1, 2))
    again = where(Filter.eq("qty", 7) & Filter.between("price", 3, 4))
    assert again.query is first.query
    assert (first.params, again.params) == ((1, 1.0, 2.0), (7, 3.0, 4.0))
    with pytest.raises(ValidationError, match=r"uf_trades\.price = 'x'"):
        where(Filter.eq("qty", 7) & Filter.between("price", 3, "x"))
    other = where(Filter.eq("qty", 1) | Filter.between("price", 1, 2))
    assert other.query is not first.query
    assert other.as_string() != first.as_string()


def test_hand_written_sql_is_compiled_every_time() -> None:
    """A filter holding Filter.raw has no shape: its SQL is composed afresh, params in order."""
    f = Filter.eq("qty", 1) & Filter.raw(sql.SQL("price > %s"), [5])
    first, params = compile_filter(META, "uf_trades", f)
    assert compile_filter(META, "uf_trades", f)[0] is not first
    assert params == (1, 5)
    assert first is not None
    assert first.as_string(None) == '("qty" = %s AND (price > %s))'


def test_statements_around_a_reused_fragment_are_reused() -> None:
    """The statement built around a reused WHERE and ORDER BY is the same object, per shape."""
    ctx = CompileContext(meta=META, table="uf_trades")
    order = compile_sorts(ctx, [Sort.desc("price")])
    assert compile_sorts(ctx, [Sort.desc("price")]) is order
    where_a, params_a = compile_filter(META, "uf_trades", Filter.eq("symbol", "A"))
    where_b, params_b = compile_filter(META, "uf_trades", Filter.eq("symbol", "B"))
    one = compiler.select_where(META, None, where_a, params_a, order_by=order, limit=5)
    two = compiler.select_where(META, None, where_b, params_b, order_by=order, limit=6)
    assert two.query is one.query
    assert (one.params, two.params) == (("A", 5), ("B", 6))
    unlimited = compiler.select_where(META, None, where_b, params_b, order_by=order)
    assert unlimited.query is not one.query
    assert "LIMIT" not in unlimited.as_string()
    elsewhere = compiler.select_where(
        META, "uf_archive", where_b, params_b, order_by=order, limit=6
    )
    assert '"uf_archive"' in elsewhere.as_string()


def test_update_where_reuses_its_statement_per_column_set() -> None:
    """UPDATE ... WHERE around a reused fragment is reused for the same columns only."""
    where_a, params_a = compile_filter(META, "uf_trades", Filter.eq("symbol", "A"))
    where_b, params_b = compile_filter(META, "uf_trades", Filter.eq("symbol", "B"))
    set_qty = compiler.update_where(META, None, ["qty"], [1], where_a, params_a)
    again = compiler.update_where(META, None, ["qty"], [2], where_b, params_b)
    assert again.query is set_qty.query
    assert again.params == (2, "B")
    both = compiler.update_where(META, None, ["qty", "price"], [2, 1.0], where_b, params_b)
    assert both.query is not set_qty.query
    assert '"qty" = %s, "price" = %s' in both.as_string()


@pytest.mark.parametrize(
    "make",
    [
        lambda: Filter.eq("a", 1),
        lambda: Filter.eq("a", 1) & Filter.gt("b", 2),
        lambda: Filter.eq("a", 1) | Filter.gt("b", 2),
        lambda: ~Filter.is_null("a"),
        Filter.all_of,
        lambda: Filter.raw(sql.SQL("TRUE")),
    ],
    ids=["condition", "and", "or", "not", "empty", "raw"],
)
def test_a_filter_has_no_truth_value(make: Any):
    """`and`/`or`/`not`/`if` on a filter raise instead of silently keeping one side."""
    f = make()
    with pytest.raises(TypeError, match=r"& \(and\), \| \(or\) and ~ \(not\)"):
        bool(f)
    with pytest.raises(TypeError):
        _ = f and Filter.gt("b", 2)
    assert f is not None  # identity tests still work
