"""Expressions, row lock clauses and raw statements compile as expected (no database)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pytest
from psycopg import sql

from orso_pg import Expr, Filter, QueryBuilder, QueryError, RowLock, col, column, table, table_of
from orso_pg._compiler import Statement
from orso_pg.errors import ValidationError
from orso_pg.query._expressions import (
    ExpressionContext,
    shape,
    update_statement,
    upsert_assignments,
)
from orso_pg.query._filters import compile_filter
from orso_pg.query._locks import LockStrength, locked
from orso_pg.query._raw import raw_statement


@table("x_stock")
class Stock:
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    qty: int
    price: float
    cost: Decimal | None = None
    at: dt.datetime | None = None
    note: str | None = None
    meta: dict[str, int] | None = None
    series: np.ndarray = column(compress=True, factory=lambda: np.zeros(1))
    updated_at: dt.datetime | None = column(updated_at=True, default=None)


@table("x_owner")
class Owner:
    id: int | None = column(primary_key=True, default=None)
    name: str


META = table_of(Stock)


def compiled(expr: Expr, **options: object) -> tuple[str, list[object]]:
    ctx = ExpressionContext(meta=META, table="x_stock", **options)  # type: ignore[arg-type]
    return expr.compile(ctx).as_string(None), ctx.params


def test_arithmetic_binds_values_and_quotes_names():
    """A column reference is an identifier; every value is a parameter, never SQL text."""
    assert compiled(col("qty") + 1) == ('("qty" + %s)', [1])
    assert compiled(2 * col("price") - 0.5) == ('((%s * "price") - %s)', [2, 0.5])
    assert compiled(-col("qty")) == ('("qty" * %s)', [-1])
    assert compiled(col("qty") % 7 / 2) == ('(("qty" % %s) / %s)', [7, 2])
    assert compiled(col("cost") * Decimal("1.5")) == ('("cost" * %s)', [Decimal("1.5")])
    assert compiled(col("at") + dt.timedelta(hours=1)) == ('("at" + %s)', [dt.timedelta(hours=1)])
    assert compiled(1 - col("qty")) == ('(%s - "qty")', [1])
    assert compiled(col("qty") + col("price")) == ('("qty" + "price")', [])


def test_functions_and_qualified_names():
    """now(), coalesce() and EXCLUDED compile as PostgreSQL spells them."""
    assert compiled(Expr.now()) == ("now()", [])
    target = META.by_name["note"]
    assert compiled(Expr.coalesce(col("note"), "none"), target=target) == (
        'coalesce("note", %s)',
        ["none"],
    )
    assert compiled(
        col("qty") + Expr.excluded("qty"), stored="x_stock", incoming=sql.SQL("EXCLUDED")
    ) == (
        '("x_stock"."qty" + EXCLUDED."qty")',
        [],
    )
    raw = Expr.raw(sql.SQL("greatest({}, %s)").format(sql.Identifier("qty")), [0])
    assert compiled(raw) == ('(greatest("qty", %s))', [0])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: col("nope") + 1, "no column 'nope'|nope"),
        (lambda: col("symbol") + 1, "x_stock.symbol is text"),
        (lambda: col("meta") + 1, "x_stock.meta is jsonb"),
        (lambda: col("series") + 1, "compressed"),
        (lambda: col("qty") + None, "use Expr.coalesce"),
        (lambda: col("qty") + "1", "not str"),
        (lambda: col("qty") + True, "not bool"),
        (lambda: Expr.excluded("qty"), "applies only in the update_columns"),
    ],
)
def test_bad_expressions_are_refused_before_sql(make, message):
    """Unknown names, meaningless arithmetic and misplaced EXCLUDED raise a QueryError."""
    with pytest.raises(QueryError, match=message):
        compiled(make())


def test_constructors_check_their_arguments():
    """A name that is no str, a one-item coalesce and a str as raw SQL are refused."""
    with pytest.raises(QueryError, match=r"col\(\) needs a column name"):
        col(3)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match=r"excluded\(\) needs"):
        Expr.excluded("")
    with pytest.raises(QueryError, match="at least two"):
        Expr.coalesce(col("qty"))
    with pytest.raises(QueryError, match=r"psycopg.sql object"):
        Expr.raw("qty + 1")  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="sequence of values"):
        Expr.raw(sql.SQL("%s"), "1")


def test_a_coalesce_value_is_checked_by_the_assigned_column():
    """Plain values inside coalesce go through the target column's own check."""
    with pytest.raises(ValidationError, match=r"x_stock.qty"):
        compiled(Expr.coalesce(col("qty"), "many"), target=META.by_name["qty"])


def test_expressions_have_no_truth_value():
    """`col(...) + 1 and ...` would silently drop a side: it raises TypeError instead."""
    with pytest.raises(TypeError, match="no truth value"):
        bool(col("qty") + 1)
    assert repr(col("qty") * 2) == "(col('qty') * 2)"
    assert repr(Expr.coalesce(Expr.excluded("qty"), 0)) == "coalesce(excluded('qty'), 0)"
    assert repr(Expr.now()) == "now()"
    assert "Expr.raw" in repr(Expr.raw(sql.SQL("1")))


def test_update_statement_sets_updated_at_and_is_cached_per_shape():
    """One UPDATE with SET params before WHERE params; the same shape returns the same text."""
    where, params = compile_filter(META, "x_stock", Filter.in_values("id", [1, 2]))

    def build(delta: int) -> Statement:
        pairs = [(META.by_name["qty"], col("qty") + delta), (META.by_name["note"], "x")]
        return update_statement(META, None, "x_stock", pairs, where, params)

    first, second = build(1), build(5)
    assert first.as_string() == (
        'UPDATE "x_stock" SET "qty" = ("qty" + %s), "note" = %s, "updated_at" = now() '
        'WHERE "id" = ANY(%b::BIGINT[])'
    )
    assert first.params == (1, "x", [1, 2])
    assert second.params == (5, "x", [1, 2])
    assert first.query is second.query
    raw = Expr.raw(sql.SQL("1"))
    stamp = update_statement(META, None, "x_stock", [(META.by_name["updated_at"], raw)], None, ())
    assert stamp.as_string() == 'UPDATE "x_stock" SET "updated_at" = (1)'


def test_shapes_ignore_values_but_not_raw_sql():
    """Values do not change a shape; raw SQL makes an expression uncacheable."""
    assert shape(col("qty") + 1) == shape(col("qty") + 2)
    assert shape(col("qty") + 1) != shape(col("price") + 1)
    assert shape(Expr.coalesce(col("qty"), 0)) == ("coalesce", ("col", "qty"), "value")
    assert shape(Expr.now()) == ("now",)
    assert shape(Expr.excluded("qty") - 1) == ("op", "-", ("excluded", "qty"), "value")
    assert shape(col("qty") + Expr.raw(sql.SQL("1"))) is None
    assert shape(Expr.coalesce(Expr.raw(sql.SQL("1")), 0)) is None


def test_upsert_assignments_qualify_the_stored_row():
    """update_columns as a mapping: stored values qualified, proposed ones from EXCLUDED."""
    query, params = upsert_assignments(
        META, "x_stock", {"qty": col("qty") + Expr.excluded("qty"), "note": "merged"}
    )
    assert query.as_string(None) == (
        '"qty" = ("x_stock"."qty" + EXCLUDED."qty"), "note" = %s, "updated_at" = now()'
    )
    assert params == ("merged",)
    with pytest.raises(QueryError, match="at least one column"):
        upsert_assignments(META, "x_stock", {})
    with pytest.raises(QueryError, match="compressed"):
        upsert_assignments(META, "x_stock", {"series": Expr.excluded("series")})


# --- row locks ----------------------------------------------------------------------------------


def test_lock_clauses():
    """Each strength and wait policy has its clause; of= is checked against the query's tables."""
    assert RowLock.update().clause(["t"]).as_string(None) == " FOR UPDATE"
    assert RowLock.no_key_update(nowait=True).clause(["t"]).as_string(None) == (
        " FOR NO KEY UPDATE NOWAIT"
    )
    assert RowLock.share(skip_locked=True).clause(["t"]).as_string(None) == (
        " FOR SHARE SKIP LOCKED"
    )
    assert RowLock.key_share(of=["t", Owner]).clause(["t", "x_owner"]).as_string(None) == (
        ' FOR KEY SHARE OF "t", "x_owner"'
    )
    assert RowLock.update().strength is LockStrength.UPDATE
    with pytest.raises(QueryError, match="names no table of this query"):
        RowLock.update(of="elsewhere").clause(["t"])


def test_bad_locks_are_refused():
    """nowait with skip_locked, non-bool flags, a bad of= and a non-RowLock are QueryErrors."""
    with pytest.raises(QueryError, match="cannot both"):
        RowLock.update(nowait=True, skip_locked=True)
    with pytest.raises(QueryError, match="True or False"):
        RowLock.update(nowait=1)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="names tables"):
        RowLock.update(of=[3])
    with pytest.raises(QueryError, match="LockStrength"):
        RowLock("UPDATE")  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="takes a RowLock"):
        locked(Statement(sql.SQL("SELECT 1")), "FOR UPDATE", "t")  # type: ignore[arg-type]


def test_locked_statements_are_cached_per_statement():
    """The same statement object and lock give the same locked statement object."""
    stmt = Statement(sql.SQL("SELECT 1 FROM t"), (1,))
    first = locked(stmt, RowLock.update(skip_locked=True), "t")
    again = locked(Statement(stmt.query, (2,)), RowLock.update(skip_locked=True), "t")
    assert first.as_string() == "SELECT 1 FROM t FOR UPDATE SKIP LOCKED"
    assert first.query is again.query
    assert again.params == (2,)
    assert locked(stmt, None, "t") is stmt


def test_builder_lock_clause_follows_limit_and_names_joins():
    """QueryBuilder puts the lock after LIMIT/OFFSET and checks of= against joined tables."""
    q = (
        QueryBuilder(Stock)
        .join(Owner, ("id", "id"), alias="o")
        .limit(5)
        .offset(2)
        .for_update(skip_locked=True, of="x_stock")
    )
    assert q.build().as_string().endswith('LIMIT %s OFFSET %s FOR UPDATE OF "x_stock" SKIP LOCKED')
    shared = QueryBuilder(Stock).for_share(nowait=True, key=True)
    assert shared.build().as_string().endswith(" FOR KEY SHARE NOWAIT")
    no_key = QueryBuilder(Stock).for_update(no_key=True)
    assert no_key.build().as_string().endswith(" FOR NO KEY UPDATE")
    assert "FOR" not in no_key.build_count().as_string()
    assert QueryBuilder(Stock).for_update().lock(None).row_lock is None
    with pytest.raises(QueryError, match="names no table"):
        QueryBuilder(Stock).for_update(of="o2").build()
    with pytest.raises(QueryError, match="DISTINCT, GROUP BY, aggregates"):
        QueryBuilder(Stock).select("symbol").group_by("symbol").for_update().build()
    with pytest.raises(QueryError, match="takes a RowLock"):
        QueryBuilder(Stock).lock("FOR UPDATE")  # type: ignore[arg-type]


# --- raw statements -------------------------------------------------------------------------------


def test_raw_statements_take_only_psycopg_sql():
    """A str query, a str as params and a mapping are refused; None means no params."""
    assert raw_statement(sql.SQL("SELECT %s"), (1,), "fetch").params == (1,)
    assert raw_statement(sql.SQL("SELECT 1"), None, "fetch").params == ()
    with pytest.raises(QueryError, match=r"fetch takes a psycopg.sql object"):
        raw_statement("SELECT 1", (), "fetch")
    with pytest.raises(QueryError, match="sequence of values"):
        raw_statement(sql.SQL("SELECT %s"), "1", "fetch")
    with pytest.raises(QueryError, match="sequence of values"):
        raw_statement(sql.SQL("SELECT %s"), {"a": 1}, "fetch")
