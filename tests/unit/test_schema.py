"""Model definitions: what @table and column() accept, record and refuse."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt
import pytest

from orso_pg import DefinitionError, Index, Orso, column, table, table_of
from orso_pg._schema import models


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@table("everything", unique=[("name", "day")], indexes=[("day",), Index(("name",), "hash")])
class Everything(Orso):
    id: uuid.UUID | None = column(primary_key=True, default=None)
    name: str = column(index=True)
    amount: int
    ratio: float
    flag: bool
    at: dt.datetime
    day: dt.date
    price: Decimal
    key: uuid.UUID
    blob: bytes
    doc: dict[str, Any]
    ints: list[int]
    floats: list[float]
    texts: list[str]
    color: Color
    arr: npt.NDArray[np.float64]
    packed: np.ndarray = column(compress=True, factory=lambda: np.zeros(0))
    maybe: str | None = None
    created_at: dt.datetime | None = column(created_at=True, default=None)
    updated_at: dt.datetime | None = column(updated_at=True, default=None)


@table("plain_things")
class Plain:
    id: int | None = column(primary_key=True, default=None)
    label: str


@table("natural")
@attrs.define(kw_only=True)
class Natural(Orso):
    code: str = column(primary_key=True)
    name: str = column(unique=True)


def test_columns_keep_declaration_order_and_types():
    """Every attrs field becomes a column, in order, with its mapped SQL type."""
    meta = table_of(Everything)
    labels = {c.name: c.type.label for c in meta.columns}
    assert list(labels)[:4] == ["id", "name", "amount", "ratio"]
    assert labels["amount"] == "bigint"
    assert labels["ratio"] == "double precision"
    assert labels["at"] == "timestamptz"
    assert labels["doc"] == "jsonb"
    assert labels["ints"] == "bigint[]"
    assert labels["texts"] == "text[]"
    assert labels["arr"] == "double precision[]"
    assert labels["packed"].startswith("bytea (compressed")
    assert labels["color"].startswith("text")


def test_nullability_follows_the_annotation():
    """``X | None`` makes a nullable column; server-filled columns stay NOT NULL."""
    meta = table_of(Everything)
    assert meta.column("maybe").nullable
    assert not meta.column("maybe").not_null
    assert meta.column("created_at").not_null
    assert meta.column("name").not_null


def test_keys_timestamps_and_indexes_are_recorded():
    """The primary key, unique keys, upsert key, timestamps and indexes land in the metadata."""
    meta = table_of(Everything)
    assert meta.primary_key is not None
    assert meta.primary_key.name == "id"
    assert meta.primary_key.generated
    assert meta.unique_keys == (("name", "day"),)
    assert meta.upsert_key == ("name", "day")
    assert meta.created_at is meta.column("created_at")
    assert meta.updated_at is meta.column("updated_at")
    assert {(i.columns, i.method) for i in meta.indexes} == {
        (("name",), "btree"),
        (("day",), "btree"),
        (("name",), "hash"),
    }


def test_plain_class_is_made_an_attrs_class():
    """``@table`` on a plain annotated class applies ``attrs.define(kw_only=True)``."""
    assert "__attrs_attrs__" in Plain.__dict__
    thing = Plain(label="x")
    assert thing.id is None
    with pytest.raises(TypeError):
        Plain("x")  # type: ignore[call-arg, arg-type]


def test_natural_key_and_identity_key():
    """A non-optional key is natural; an ``int | None`` key is an identity column."""
    assert not table_of(Natural).primary_key.generated  # type: ignore[union-attr]
    plain_key = table_of(Plain).primary_key
    assert plain_key is not None
    assert plain_key.identity


def test_registry_and_default_table_name():
    """Models register by table name; without a name the class name is lower-cased."""

    @table()
    class Lonely:
        id: int | None = column(primary_key=True, default=None)

    assert table_of(Lonely).name == "lonely"
    assert models()["lonely"] is table_of(Lonely)


def test_field_named_id_is_the_default_key():
    """Without primary_key=True a field called ``id`` is the key, as in orso."""

    @table("implicit_key")
    class Implicit:
        id: str | None = None
        body: str = ""

    meta = table_of(Implicit)
    assert meta.primary_key is not None
    assert meta.primary_key.name == "id"
    assert meta.primary_key.generated


def test_foreign_key_to_a_model_references_its_key():
    """``ref=Model`` points at that model's primary key column."""

    @table("children_of_natural")
    class Child:
        id: int | None = column(primary_key=True, default=None)
        parent: str = column(ref=Natural, on_delete="CASCADE")

    col = table_of(Child).column("parent")
    assert (col.ref_table, col.ref_column) == ("natural", "code")


def test_a_model_may_extend_one_from_another_module(monkeypatch: pytest.MonkeyPatch):
    """Inherited annotations resolve in the module that wrote them, not in the subclass's."""
    import sys
    import types as pytypes

    other = pytypes.ModuleType("other_models")
    monkeypatch.setitem(sys.modules, "other_models", other)
    source = (
        "from __future__ import annotations\n"
        "import datetime as only_here\n"
        "from orso_pg import Orso, column, table\n"
        "@table('base_ticks')\n"
        "class Tick(Orso):\n"
        "    id: int | None = column(primary_key=True, default=None)\n"
        "    at: only_here.datetime\n"
    )
    exec(compile(source, "other_models", "exec"), other.__dict__)  # noqa: S102

    @table("ticks_v2")
    class TickV2(other.Tick):  # type: ignore[name-defined,misc]
        venue: str = "X"

    assert table_of(TickV2).column("at").type.label == "timestamptz"
    assert table_of(TickV2).column_names == ("id", "at", "venue")


def test_table_of_rejects_non_models():
    """``table_of`` on a class that was never decorated names the class."""

    class Nothing:
        pass

    with pytest.raises(DefinitionError, match="Nothing is not an orso_pg model"):
        table_of(Nothing)


def _define(**annotations: Any) -> type:
    namespace: dict[str, Any] = {"__annotations__": annotations}
    return type("Bad", (), namespace)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: table("t1")(_define(x=set)), r"Bad\.x: no PostgreSQL mapping"),
        (lambda: table("t2")(_define(x=np.ndarray)), r"Bad\.x: np.ndarray needs compress"),
        (lambda: table("t" * 64)(_define(x=int)), "64 bytes"),
        (lambda: table("t3")(_define(**{"é" * 32: int})), "64 bytes"),
        (lambda: table("ratio%")(_define(x=int)), r"table name 'ratio%' contains %"),
        (lambda: table("t4", schema="a%b")(_define(x=int)), r"schema name 'a%b' contains %"),
    ],
    ids=[
        "unmappable",
        "bare-ndarray",
        "long-table",
        "long-column",
        "percent-table",
        "percent-schema",
    ],
)
def test_bad_definitions_name_class_and_field(build: Any, message: str):
    """An unmappable type or an over-long identifier fails at decoration, naming the field."""
    with pytest.raises(DefinitionError, match=message):
        build()


@pytest.mark.parametrize(
    ("options", "annotation", "message"),
    [
        ({"created_at": True}, "str", "must be datetime"),
        ({"compress": True}, "str", "compress=True needs"),
        ({"on_delete": "CASCADE"}, "int", "on_delete= needs ref="),
        ({"ref": "x", "on_delete": "EXPLODE"}, "str", "on_delete must be one of"),
        ({"sql_type": "text; drop table x"}, "str", "is not a type name"),
        ({"decimals": 2}, "float", "decimals= only applies"),
        ({"index": "nope"}, "int", "index must be True or one of"),
        ({"server_default": "x"}, "int", "server_default 'x'"),
        ({"primary_key": True}, "float | None", "has no generated default"),
    ],
)
def test_bad_column_options_are_refused(options: dict[str, Any], annotation: str, message: str):
    """Inconsistent column options raise DefinitionError with the reason."""
    namespace = {"__annotations__": {"x": annotation}, "x": column(**options)}
    cls = type("Opt", (), namespace)
    cls.__module__ = __name__
    with pytest.raises(DefinitionError, match=message):
        table("options_table")(cls)


def test_unknown_column_options_are_refused():
    """A misspelt option raises TypeError instead of being ignored as orso's macro did."""
    with pytest.raises(TypeError, match=r"unknown option.*primary_kee"):
        column(primary_kee=True)  # type: ignore[call-overload]


def test_sql_type_is_parsed_not_pasted():
    """A declared SQL type becomes composed SQL: keywords as keywords, other names quoted."""

    @table("typed")
    class Typed:
        id: int | None = column(primary_key=True, default=None)
        code: str = column(sql_type="varchar(12)")
        ts: dt.datetime = column(sql_type="timestamp(3) with time zone")
        tags: list[str] = column(sql_type="citext[]")
        meta: list[Any] = column(sql_type="jsonb")

    meta = table_of(Typed)
    assert meta.column("code").type.ddl.as_string(None) == "VARCHAR(12)"
    assert meta.column("ts").type.ddl.as_string(None) == "TIMESTAMP(3) WITH TIME ZONE"
    assert meta.column("tags").type.ddl.as_string(None) == '"citext"[]'
    assert meta.column("meta").type.label == "jsonb"


def test_fields_may_not_hide_orso_methods():
    """A field named like an Orso method (``count``) is refused rather than breaking it."""
    with pytest.raises(
        DefinitionError, match=r"Counter\.count: the field would hide .*Orso\.count"
    ):

        @table("counters")
        class Counter(Orso):
            id: int | None = column(primary_key=True, default=None)
            count: int = 0  # type: ignore[assignment]


def test_composite_key_must_name_fields():
    """A composite unique key naming an unknown field is refused."""
    with pytest.raises(DefinitionError, match="unknown field 'nope'"):

        @table("bad_unique", unique=[("a", "nope")])
        class BadUnique:
            a: int


def test_upsert_key_must_be_declared():
    """``upsert_key`` must be one of the declared unique keys."""
    with pytest.raises(DefinitionError, match="not a declared unique key"):

        @table("bad_upsert", upsert_key=("a",))
        class BadUpsert:
            a: int
            b: int = column(unique=True)


def test_a_server_default_must_fit_the_declared_type():
    """A server default that numeric(p, s) would round or varchar(n) cannot hold is refused."""

    with pytest.raises(DefinitionError, match="more than 2 decimal places"):

        @table("s_bad_default")
        class BadDefault:
            id: int | None = column(primary_key=True, default=None)
            fee: Decimal = column(sql_type="numeric(5, 2)", server_default=Decimal("0.001"))

    with pytest.raises(DefinitionError, match="do not fit varchar"):

        @table("s_bad_default")
        class BadText:
            id: int | None = column(primary_key=True, default=None)
            code: str = column(sql_type="varchar(2)", server_default="abc")
