"""The migration planner without a database: live and target tables built by hand.

The planner is pure: it reads two table descriptions and asks a :class:`Probe` a few questions
about the data. Here the probe is a small fixed-answer class, and the tables are what
``pg_catalog`` would report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import attrs
import pytest

from orso_pg import Index, MigrationError, column, table
from orso_pg._schema import table_of
from orso_pg.migrate._apply import BATCH_BYTES, batch_size
from orso_pg.migrate._history import checksum
from orso_pg.migrate._introspect import InboundKey, LiveColumn, LiveConstraint, LiveIndex, LiveTable
from orso_pg.migrate._migrations import _dependency_order, migration
from orso_pg.migrate._planner import (
    PlanOptions,
    _fit,
    describe,
    index_name,
    plan_create,
    plan_table,
)
from orso_pg.migrate._steps import CastCheck, Convert

# format_type spelling -> (type OID, internal name, category)
TYPES: dict[str, tuple[int, str, str]] = {
    "bigint": (20, "int8", "N"),
    "integer": (23, "int4", "N"),
    "text": (25, "text", "S"),
    "double precision": (701, "float8", "N"),
    "double precision[]": (1022, "_float8", "A"),
    "text[]": (1009, "_text", "A"),
    "bigint[]": (1016, "_int8", "A"),
    "bytea": (17, "bytea", "U"),
    "numeric": (1700, "numeric", "N"),
    "character varying": (1043, "varchar", "S"),
}


def col(
    name: str,
    type_: str,
    *,
    not_null: bool = True,
    default: str | None = None,
    identity: str = "",
    typmod: int = -1,
) -> LiveColumn:
    base = type_.split("(", maxsplit=1)[0]
    oid, internal, category = TYPES[base]
    return LiveColumn(
        name=name,
        type=type_,
        type_oid=oid,
        type_schema="pg_catalog",
        type_name=internal,
        typmod=typmod,
        category=category,
        not_null=not_null,
        default=default,
        identity=identity,
    )


def live_table(
    columns: Iterable[LiveColumn],
    *,
    constraints: Iterable[LiveConstraint] = (LiveConstraint("t_pkey", "p", ("id",)),),
    indexes: Iterable[LiveIndex] = (),
    inbound: Iterable[InboundKey] = (),
    name: str = "quotes",
) -> LiveTable:
    return LiveTable(
        oid=1,
        schema="app",
        name=name,
        columns=tuple(columns),
        constraints=tuple(constraints),
        indexes=tuple(indexes),
        inbound=tuple(inbound),
    )


def index(name: str, *columns: str, unique: bool = False, valid: bool = True) -> LiveIndex:
    return LiveIndex(
        name=name,
        columns=columns,
        method="btree",
        unique=unique,
        primary=False,
        valid=valid,
        custom=False,
        constraint=False,
    )


@attrs.define
class Answers:
    """Fixed answers to the planner's questions."""

    rows: bool = True
    nulls: dict[str, int] = attrs.Factory(dict)
    coercible: set[tuple[int, int]] = attrs.Factory(set)
    taken: set[str] = attrs.Factory(set)
    stored: dict[str, list[str]] = attrs.Factory(dict)

    def has_rows(self) -> bool:
        return self.rows

    def null_count(self, column: str) -> int:
        return self.nulls.get(column, 0)

    def binary_coercible(self, source: int, target: int) -> bool:
        return (source, target) in self.coercible

    def name_taken(self, name: str) -> bool:
        return name in self.taken

    def values_outside(self, column: str, allowed: Sequence[str]) -> list[str]:
        return [v for v in self.stored.get(column, []) if v not in allowed]


@table("quotes")
class Quote:
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    price: float


ID = col("id", "bigint", identity="d")
SYMBOL = col("symbol", "text")
PRICE = col("price", "double precision")
TARGET = live_table([ID, SYMBOL, PRICE])


def plan(
    model: type,
    live: LiveTable,
    target: LiveTable,
    *,
    answers: Answers | None = None,
    previous: dict[str, Any] | None = None,
    **options: Any,
) -> Any:
    return plan_table(
        table_of(model),
        None,
        "quotes",
        live,
        target,
        previous,
        answers or Answers(),
        PlanOptions(**options),
    )


def descriptions(result: Any) -> list[str]:
    return [step.description for step in result.steps]


def test_a_matching_table_has_no_steps():
    """The live table equals the model's: nothing to do."""
    assert plan(Quote, TARGET, TARGET).steps == ()


@table("quotes")
class QuoteRenamed:
    id: int | None = column(primary_key=True, default=None)
    ticker: str = column(renamed_from=("code", "symbol"))
    price: float


def test_renamed_from_renames_the_first_former_name_present():
    """renamed_from picks the former name the table has and renames it in place."""
    target = live_table([ID, col("ticker", "text"), PRICE])
    result = plan(QuoteRenamed, TARGET, target)
    assert descriptions(result) == ["rename column symbol to ticker"]
    assert result.steps[0].sql == 'ALTER TABLE "quotes" RENAME COLUMN "symbol" TO "ticker"'


def test_a_former_name_next_to_the_new_one_is_kept_not_renamed():
    """When both names exist, nothing is renamed and the old column is kept and reported."""
    live = live_table([ID, col("symbol", "text", not_null=False), col("ticker", "text"), PRICE])
    target = live_table([ID, col("ticker", "text"), PRICE])
    result = plan(QuoteRenamed, live, target)
    assert result.steps == ()
    assert result.notes[0].startswith("kept column symbol (text)")


@table("quotes")
class QuoteWithVenue:
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    price: float
    venue: str


def test_a_not_null_column_without_default_is_refused_only_when_rows_exist():
    """The refusal names the column; on an empty table the column is simply added."""
    target = live_table([ID, SYMBOL, PRICE, col("venue", "text")])
    with pytest.raises(MigrationError, match="NOT NULL column venue") as info:
        plan(QuoteWithVenue, TARGET, target)
    assert info.value.column == "venue"
    result = plan(QuoteWithVenue, TARGET, target, answers=Answers(rows=False))
    assert [s.sql for s in result.steps] == [
        'ALTER TABLE "quotes" ADD COLUMN "venue" TEXT NOT NULL'
    ]


@table("quotes")
class QuoteWithLot:
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    price: float
    lot: Decimal = Decimal("0.01")
    tags: list[str] = column(factory=lambda: ["new"])


def test_added_columns_are_filled_with_the_model_default_then_lose_it():
    """The model's value fills existing rows through a temporary DEFAULT, without a rewrite."""
    target = live_table([ID, SYMBOL, PRICE, col("lot", "numeric"), col("tags", "text[]")])
    result = plan(QuoteWithLot, TARGET, target)
    assert [s.sql for s in result.steps] == [
        (
            'ALTER TABLE "quotes" ADD COLUMN "lot" NUMERIC DEFAULT 0.01 NOT NULL;\n'
            'ALTER TABLE "quotes" ALTER COLUMN "lot" DROP DEFAULT'
        ),
        (
            'ALTER TABLE "quotes" ADD COLUMN "tags" TEXT[] DEFAULT \'{new}\' NOT NULL;\n'
            'ALTER TABLE "quotes" ALTER COLUMN "tags" DROP DEFAULT'
        ),
    ]
    assert not any(s.rewrites for s in result.steps)


@table("quotes")
class QuoteOptionalSymbol:
    id: int | None = column(primary_key=True, default=None)
    symbol: str | None = None
    price: float


@table("quotes")
class QuoteRequiredNote:
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    price: float
    note: str


def test_nullability_changes_and_the_null_count_refusal():
    """DROP NOT NULL always; SET NOT NULL only when no row holds NULL, else the count is named."""
    target = live_table([ID, col("symbol", "text", not_null=False), PRICE])
    assert descriptions(plan(QuoteOptionalSymbol, TARGET, target)) == [
        "drop NOT NULL on column symbol"
    ]
    live = live_table([ID, SYMBOL, PRICE, col("note", "text", not_null=False)])
    target = live_table([ID, SYMBOL, PRICE, col("note", "text")])
    with pytest.raises(MigrationError, match="1 row holds NULL"):
        plan(QuoteRequiredNote, live, target, answers=Answers(nulls={"note": 1}))
    assert descriptions(plan(QuoteRequiredNote, live, target)) == ["set NOT NULL on column note"]


def test_a_kept_not_null_column_loses_its_not_null_so_inserts_work():
    """A column that left the model keeps its data; its NOT NULL goes, so inserts still work."""
    live = live_table([ID, SYMBOL, PRICE, col("venue", "text")])
    result = plan(Quote, live, TARGET)
    assert descriptions(result) == [
        "drop NOT NULL on kept column venue, so rows of the model can be inserted without it"
    ]
    assert "drop_columns=True" in result.notes[0]


def test_dropping_columns_backs_them_up_under_a_free_name():
    """drop_columns backs the key and the columns up, in a table whose name is free."""
    live = live_table([ID, SYMBOL, PRICE, col("venue", "text"), col("memo", "text")])
    result = plan(
        Quote, live, TARGET, answers=Answers(taken={"quotes_backup_1"}), drop_columns=True
    )
    assert result.backup_table == "quotes_backup_2"
    assert [s.sql for s in result.steps] == [
        'CREATE TABLE "app"."quotes_backup_2" AS SELECT "id", "venue", "memo" FROM "quotes"',
        'ALTER TABLE "quotes" DROP COLUMN "venue"',
        'ALTER TABLE "quotes" DROP COLUMN "memo"',
    ]


def test_a_column_other_tables_reference_is_never_dropped():
    """A column an inbound foreign key points at, or in the primary key, is refused."""
    live = live_table(
        [ID, SYMBOL, PRICE, col("code", "text")],
        inbound=[InboundKey("fills_code_fkey", "app", "fills", ("quote_code",), ("code",))],
    )
    with pytest.raises(MigrationError, match=r"fills_code_fkey of app\.fills"):
        plan(Quote, live, TARGET, drop_columns=True)
    no_key = live_table(
        [col("key", "bigint"), ID, SYMBOL, PRICE], constraints=[LiveConstraint("pk", "p", ("key",))]
    )
    with pytest.raises(MigrationError, match="primary key"):
        plan(Quote, no_key, TARGET)


@table("quotes", indexes=[Index(("symbol", "price"))])
class QuoteIndexed:
    id: int | None = column(primary_key=True, default=None)
    symbol: str = column(unique=True)
    price: float = column(index=True)


def test_indexes_and_unique_keys_are_added_with_stable_names():
    """New indexes are named <table>_<columns>_idx, made unique; a unique index covers a key."""
    live = live_table([ID, SYMBOL, PRICE], indexes=[index("sym_u", "symbol", unique=True)])
    result = plan(QuoteIndexed, live, TARGET, answers=Answers(taken={"quotes_price_idx"}))
    assert [s.sql for s in result.steps] == [
        'CREATE INDEX "quotes_price_idx1" ON "quotes" USING btree ("price")',
        'CREATE INDEX "quotes_symbol_price_idx" ON "quotes" USING btree ("symbol", "price")',
    ]


def test_only_indexes_keys_and_defaults_the_last_migration_made_are_dropped():
    """Objects in the previous description are dropped when they leave; hand-made ones stay."""
    live = live_table(
        [ID, SYMBOL, col("price", "double precision", default="0")],
        constraints=[
            LiveConstraint("t_pkey", "p", ("id",)),
            LiveConstraint("quotes_symbol_key", "u", ("symbol",)),
        ],
        indexes=[index("quotes_price_idx", "price"), index("by_hand", "price", "symbol")],
    )
    previous = describe(table_of(QuoteIndexed), TARGET)
    previous["columns"]["price"]["default"] = "0"
    result = plan(Quote, live, TARGET, previous=previous)
    assert descriptions(result) == [
        "drop unique constraint quotes_symbol_key (symbol)",
        "drop index quotes_price_idx (price)",
        "drop default 0 of column price",
    ]
    untouched = plan(Quote, live, TARGET)
    assert untouched.steps == ()
    assert untouched.notes == ("kept default 0 of column price, which the model does not set",)


def test_a_unique_key_another_table_references_is_not_dropped():
    """Dropping a unique key a foreign key depends on is refused, naming that key."""
    live = live_table(
        [ID, SYMBOL, PRICE],
        constraints=[LiveConstraint("t_pkey", "p", ("id",)), LiveConstraint("u", "u", ("symbol",))],
        inbound=[InboundKey("fk", "app", "fills", ("sym",), ("symbol",))],
    )
    with pytest.raises(MigrationError, match="foreign key fk"):
        plan(Quote, live, TARGET, previous={"unique": [["symbol"]]})


def test_an_invalid_index_of_the_model_is_dropped_then_rebuilt():
    """An INVALID copy of a model index is dropped and the index built again, same name."""
    live = live_table(
        [ID, SYMBOL, PRICE], indexes=[index("quotes_price_idx", "price", valid=False)]
    )
    result = plan(QuoteIndexed, live, TARGET, answers=Answers(taken={"quotes_price_idx"}))
    assert result.steps[0].sql == 'DROP INDEX "app"."quotes_price_idx"'
    assert 'CREATE INDEX "quotes_price_idx" ON' in result.steps[2].sql
    foreign = live_table([ID, SYMBOL, PRICE], indexes=[index("other", "symbol", valid=False)])
    assert any("is invalid" in note for note in plan(Quote, foreign, TARGET).notes)


def test_concurrent_indexes_run_outside_the_transaction():
    """With concurrent_indexes a new index is a non-transactional CONCURRENTLY step."""
    result = plan(QuoteIndexed, live_table([ID, SYMBOL, PRICE]), TARGET, concurrent_indexes=True)
    built = [s for s in result.steps if not s.transactional]
    assert [s.sql.split(" ON ")[0] for s in built] == [
        'CREATE INDEX CONCURRENTLY "quotes_price_idx"',
        'CREATE INDEX CONCURRENTLY "quotes_symbol_price_idx"',
    ]


def test_changing_the_primary_key_is_refused():
    """A different primary key is not changed automatically."""
    live = live_table([ID, SYMBOL, PRICE], constraints=[LiveConstraint("pk", "p", ("symbol",))])
    with pytest.raises(MigrationError, match="changing a primary key"):
        plan(Quote, live, TARGET)


def test_a_missing_primary_key_is_added():
    """A table without a primary key gets the model's."""
    result = plan(Quote, live_table([ID, SYMBOL, PRICE], constraints=()), TARGET)
    assert [s.sql for s in result.steps] == ['ALTER TABLE "quotes" ADD PRIMARY KEY ("id")']


@table("quotes")
class QuoteWide:
    id: int | None = column(primary_key=True, default=None)
    symbol: str = column(sql_type="varchar(20)")
    price: Decimal = column(sql_type="numeric(12,2)")


@pytest.mark.parametrize(
    ("live_symbol", "live_price", "rewrites"),
    [
        (
            col("symbol", "character varying(10)", typmod=14),
            col("price", "numeric(10,2)", typmod=655366),
            [False, False],
        ),
        (
            col("symbol", "character varying(30)", typmod=34),
            col("price", "numeric(12,3)", typmod=786435),
            [True, True],
        ),
        (col("symbol", "text"), col("price", "numeric(14,2)", typmod=917510), [True, True]),
    ],
    ids=["widen", "narrow", "retype"],
)
def test_type_changes_say_whether_they_rewrite(live_symbol, live_price, rewrites):
    """Widening varchar or numeric precision is in place; narrowing or a new scale rewrites."""
    target = live_table(
        [
            ID,
            col("symbol", "character varying(20)", typmod=24),
            col("price", "numeric(12,2)", typmod=786438),
        ]
    )
    result = plan(QuoteWide, live_table([ID, live_symbol, live_price]), target)
    assert [s.rewrites for s in result.steps] == rewrites
    check = result.steps[0].actions[-1]
    assert isinstance(check, CastCheck)
    assert check.alter.as_string() == (
        'ALTER TABLE "quotes" ALTER COLUMN "symbol" TYPE VARCHAR(20) USING ("symbol")::VARCHAR(20)'
    )


def test_a_binary_coercible_cast_to_an_unlimited_type_does_not_rewrite():
    """varchar to text is in place when pg_cast says it is binary-coercible."""
    live = live_table([ID, col("symbol", "character varying(10)", typmod=14), PRICE])
    answers = Answers(coercible={(1043, 25)})
    assert [s.rewrites for s in plan(Quote, live, TARGET, answers=answers).steps] == [False]
    assert [s.rewrites for s in plan(Quote, live, TARGET).steps] == [True]


def test_a_string_parsed_into_another_type_skips_the_round_trip_check():
    """text to bigint only has to parse ('007' becomes 7); bigint to text must round-trip."""
    live = live_table([ID, SYMBOL, col("price", "text")])
    (step,) = plan(Quote, live, TARGET).steps
    assert step.actions[-1].lossless is None
    live = live_table([ID, col("symbol", "bigint"), PRICE])
    (step,) = plan(Quote, live, TARGET).steps
    assert "IS DISTINCT FROM" in step.sql
    (lossy,) = plan(Quote, live, TARGET, allow_data_loss=True).steps
    assert lossy.actions[-1].lossless is None


@table("quotes")
class QuoteCompressed:
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    price: float
    prices: list[float] = column(compress=True, factory=list)


@table("quotes")
class QuoteArrays:
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    price: float
    prices: list[float] = column(factory=list)


def test_compress_on_and_off_are_conversions_of_every_row():
    """Array to compressed encodes rows; bytea back to an array decodes them; text[] is refused."""
    frames = live_table([ID, SYMBOL, PRICE, col("prices", "bytea")])
    arrays = live_table([ID, SYMBOL, PRICE, col("prices", "double precision[]")])
    (step,) = plan(QuoteCompressed, arrays, frames).steps
    (encode,) = step.actions
    assert isinstance(encode, Convert)
    assert encode.source_dtype == "float64"
    assert step.rewrites
    assert 'USING "pg_temp"."orso_pg_convert"(ctid::text)' in step.sql
    (step,) = plan(QuoteArrays, frames, arrays).steps
    (decode,) = step.actions
    assert isinstance(decode, Convert)
    assert decode.source_dtype is None
    assert step.description.startswith("decompress column prices")
    texts = live_table([ID, SYMBOL, PRICE, col("prices", "text[]")])
    with pytest.raises(MigrationError, match="not a numeric array"):
        plan(QuoteCompressed, texts, frames)


def test_names_longer_than_postgresql_keeps_are_shortened_with_a_hash():
    """Index names stay within 63 bytes, distinct for distinct columns."""
    long_a = _fit("t_" + "a" * 80 + "_idx")
    long_b = _fit("t_" + "a" * 79 + "b_idx")
    assert len(long_a.encode()) <= 63
    assert long_a != long_b
    assert index_name("t", Index(("x",), name="given"), lambda _n: True) == "given"


def test_the_description_and_its_checksum_are_stable():
    """The same model and target give the same description and checksum; a change moves it."""
    meta = table_of(QuoteIndexed)
    first = describe(meta, TARGET)
    assert first == describe(meta, TARGET)
    assert checksum(first) == checksum(describe(meta, TARGET))
    assert checksum(first) != checksum(describe(table_of(Quote), TARGET))
    assert first["unique"] == [["symbol"]]


def test_creating_a_table_names_its_indexes():
    """A new table gets CREATE TABLE, then one named CREATE INDEX per index."""
    created = plan_create(table_of(QuoteIndexed), "quotes_2024", "quotes_2024", lambda _n: False)
    assert [s.description for s in created.steps] == [
        "create table quotes_2024",
        "create btree index quotes_2024_price_idx on (price)",
        "create btree index quotes_2024_symbol_price_idx on (symbol, price)",
    ]


@table("legs")
class Leg:
    id: int | None = column(primary_key=True, default=None)
    quote_id: int = column(ref="quotes")
    parent_id: int | None = column(ref="legs", default=None)


def test_referenced_tables_are_migrated_first():
    """Entries are ordered so a referenced table comes before the tables pointing at it."""
    entries = [migration(Leg), migration(Quote)]
    assert _dependency_order(entries) == [1, 0]
    assert _dependency_order([migration(Quote), migration(Leg)]) == [0, 1]


@table("fills")
class FillCascade:
    id: int | None = column(primary_key=True, default=None)
    quote_id: int = column(ref="quotes", on_delete="CASCADE")


@table("fills")
class FillNoKey:
    id: int | None = column(primary_key=True, default=None)
    quote_id: int


def test_foreign_keys_follow_the_model_and_only_recorded_ones_are_dropped():
    """A changed ON DELETE drops the recorded key and adds the new one; a hand-made key stays."""
    fk = LiveConstraint("fills_quote_id_fkey", "f", ("quote_id",), "app", "quotes", ("id",))
    pk = LiveConstraint("fills_pkey", "p", ("id",))
    live = live_table([ID, col("quote_id", "bigint")], constraints=[pk, fk], name="fills")
    target = live_table([ID, col("quote_id", "bigint")], name="fills")
    previous = {"foreign_keys": [["quote_id", "quotes", "id", "NO ACTION"]]}
    result = plan_table(
        table_of(FillCascade), None, "fills", live, target, previous, Answers(), PlanOptions()
    )
    assert [s.sql for s in result.steps] == [
        'ALTER TABLE "fills" DROP CONSTRAINT "fills_quote_id_fkey"',
        (
            'ALTER TABLE "fills" ADD FOREIGN KEY ("quote_id") REFERENCES "quotes" ("id")'
            " ON DELETE CASCADE"
        ),
    ]
    kept = plan_table(
        table_of(FillNoKey), None, "fills", live, target, None, Answers(), PlanOptions()
    )
    assert kept.steps == ()


@table("quotes")
class QuoteKeyed:
    key: int | None = column(primary_key=True, default=None)
    symbol: str
    price: float


def test_a_new_identity_key_column_rewrites_and_identity_changes_are_left_alone():
    """An added identity key fills every row (a rewrite); an identity that differs is a note."""
    live = live_table([SYMBOL, PRICE], constraints=())
    target = live_table([col("key", "bigint", identity="d"), SYMBOL, PRICE])
    target = attrs.evolve(target, constraints=(LiveConstraint("pk", "p", ("key",)),))
    result = plan(QuoteKeyed, live, target)
    assert [s.sql for s in result.steps] == [
        'ALTER TABLE "quotes" ADD COLUMN "key" BIGINT GENERATED BY DEFAULT AS IDENTITY NOT NULL',
        'ALTER TABLE "quotes" ADD PRIMARY KEY ("key")',
    ]
    assert result.steps[0].rewrites
    serial = live_table(
        [col("id", "bigint", default="nextval('q_id_seq'::regclass)"), SYMBOL, PRICE]
    )
    noted = plan(Quote, serial, TARGET)
    assert noted.steps == ()
    assert noted.notes == ("column id: identity differs from the model's; left as it is",)


@table("quotes")
class QuoteBadDefault:
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    price: float
    size: int = 2**70


def test_a_model_default_the_column_cannot_store_is_refused():
    """A default outside BIGINT cannot fill the rows: refused, naming the column and the value."""
    target = live_table([ID, SYMBOL, PRICE, col("size", "bigint")])
    with pytest.raises(MigrationError, match="model default") as info:
        plan(QuoteBadDefault, TARGET, target)
    assert info.value.column == "size"
    assert info.value.value == 2**70


@table("quotes")
class QuoteDefaults:
    id: int | None = column(primary_key=True, default=None)
    symbol: str = column(server_default="?")
    price: float


def test_a_retyped_column_loses_its_default_before_and_gets_the_model_one_after():
    """The old default would not cast, so it goes before the type change; the model's follows."""
    live = live_table([ID, col("symbol", "bigint", default="0"), PRICE])
    target = live_table([ID, col("symbol", "text", default="'?'::text"), PRICE])
    result = plan(QuoteDefaults, live, target)
    assert [s.sql.split(";\n")[0] for s in result.steps] == [
        'ALTER TABLE "quotes" ALTER COLUMN "symbol" DROP DEFAULT',
        'ALTER TABLE "quotes" ALTER COLUMN "symbol" SET DEFAULT \'?\'',
    ]
    assert result.steps[0].sql.endswith('TYPE TEXT USING ("symbol")::TEXT')


def test_conversion_batches_shrink_as_stored_values_grow():
    """Short arrays go 2,000 rows at a time; a value of 64 MiB or more goes alone."""
    assert batch_size(0) == batch_size(100) == 2000
    assert batch_size(100_000) < 2000
    assert batch_size(BATCH_BYTES) == 1
    assert batch_size(10**6) >= batch_size(10**7) >= 1
