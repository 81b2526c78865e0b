"""Recorded table schemas: a live table as JSON, and a model rebuilt from that JSON.

Owns the serialisable description of a table that the history keeps before and after each
migration (columns with PostgreSQL's spelling of their types, nullability, defaults, identity,
compressed columns and enum members; the primary key, unique keys, indexes and foreign keys;
the renames the migration made), and :func:`meta_from_snapshot`, which turns such a description
back into a :class:`~orso_pg._schema.TableMeta` the planner can migrate a table back to.

It is pure: it must not run anything nor decide what a migration does. Recorded default
expressions are never pasted into SQL: the defaults orso_pg itself writes (``now()``,
``gen_random_uuid()``) and plain constants are rebuilt; any other default is left as the
live table has it (the plan then says it is kept).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import attrs
import numpy as np
import numpy.typing as npt
from psycopg import sql

from orso_pg import _types
from orso_pg._schema import Column, ColumnOptions, Index, TableForeignKey, TableMeta
from orso_pg.errors import MigrationError
from orso_pg.migrate import _ddl as ddl
from orso_pg.migrate._introspect import LiveTable

__all__ = ["FORMAT", "meta_from_snapshot", "renames_of", "snapshot"]

FORMAT: Final = 1

# Defaults orso_pg writes, as PostgreSQL prints them, and how to write them again.
_KNOWN_DEFAULTS: Final[Mapping[str, sql.Composable]] = {
    "now()": sql.SQL("now()"),
    "CURRENT_TIMESTAMP": sql.SQL("CURRENT_TIMESTAMP"),
    "gen_random_uuid()": sql.SQL("gen_random_uuid()"),
    "(gen_random_uuid())::text": sql.SQL("gen_random_uuid()::text"),
}
_QUOTED = re.compile(r"^'((?:[^']|'')*)'(?:::[a-z ]+(?:\(\d+(?:,\d+)?\))?)?$")
_NUMBER = re.compile(r"^\(?(-?\d+(?:\.\d+)?)\)?(?:::[a-z ]+(?:\(\d+(?:,\d+)?\))?)?$")
_ENUM_MEMBER = re.compile(r"'((?:[^']|'')*)'")
_RENAME = re.compile(r"^rename column (.+) to (.+)$")

# Native arrays of numbers: rebuilt as numpy arrays, so that a compressed column converts back.
_ARRAYS: Final[Mapping[str, Any]] = {
    "bigint[]": npt.NDArray[np.int64],
    "integer[]": npt.NDArray[np.int32],
    "smallint[]": npt.NDArray[np.int16],
    "double precision[]": npt.NDArray[np.float64],
    "real[]": npt.NDArray[np.float32],
    "boolean[]": npt.NDArray[np.bool_],
}


def snapshot(
    live: LiveTable, *, compressed: Iterable[str] = (), renamed: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Return *live* as JSON-ready data.

    Args:
        live: The table as the catalog describes it.
        compressed: The BYTEA columns holding codec frames (the catalog cannot tell).
        renamed: ``{old: new}`` for the columns the migration being recorded renamed.
    """
    packed = set(compressed)
    checks = {con.name: con.definition for con in live.of_kind("c")}
    columns = []
    for column in live.columns:
        check = checks.get(ddl.enum_check_name(column.name))
        members = None
        if check is not None:
            members = sorted(m.replace("''", "'") for m in _ENUM_MEMBER.findall(check))
        columns.append(
            {
                "name": column.name,
                "type": column.type,
                "not_null": column.not_null,
                "default": column.default,
                "identity": column.identity,
                "generated": column.generated,
                "compressed": column.name in packed and column.type_name == "bytea",
                "enum": members,
            }
        )
    indexes = [
        {
            "name": idx.name,
            "columns": list(idx.columns),
            "method": idx.method,
            "unique": idx.unique,
            "opclass": idx.opclass,
            "params": [list(p) for p in idx.params],
        }
        for idx in live.indexes
        if idx.valid and not (idx.primary or idx.constraint or idx.custom)
    ]
    keys = [
        {
            "columns": list(con.columns),
            "ref_schema": con.ref_schema,
            "ref_table": con.ref_table,
            "ref_columns": list(con.ref_columns),
            "on_delete": con.on_delete,
        }
        for con in live.of_kind("f")
        if con.ref_table is not None
    ]
    return {
        "format": FORMAT,
        "schema": live.schema,
        "table": live.name,
        "columns": columns,
        "primary_key": list(live.primary_key),
        "unique": [list(con.columns) for con in live.of_kind("u")],
        "indexes": indexes,
        "foreign_keys": keys,
        "renamed": dict(renamed or {}),
    }


def renames_of(
    after: Mapping[str, Any] | None, steps: Iterable[Mapping[str, Any]]
) -> dict[str, str]:
    """Return ``{old: new}`` for the renames one history record made.

    Records with schemas list them; older ones are read from their steps' descriptions.
    """
    if after is not None and "renamed" in after:
        return {str(k): str(v) for k, v in after["renamed"].items()}
    found: dict[str, str] = {}
    for step in steps:
        match = _RENAME.match(str(step.get("description", "")))
        if match is not None:
            found[match.group(1)] = match.group(2)
    return found


@attrs.define
class _Recorded:
    """The stand-in model class of a recorded schema (it has no fields, hence no defaults)."""


def meta_from_snapshot(
    recorded: Mapping[str, Any], *, record_id: int, current: Mapping[str, str], label: str = ""
) -> tuple[TableMeta, list[str]]:
    """Return a model of the recorded table, and what of it cannot be rebuilt.

    Args:
        recorded: What :func:`snapshot` returned.
        record_id: The history record it comes from, named in the model.
        current: ``{recorded name: name now}`` for the columns renamed since.
        label: What the history records as the model of a migration to it.

    Raises:
        MigrationError: a column's recorded type cannot be written again.
    """
    table = str(recorded["table"])
    key = [str(c) for c in recorded["primary_key"]]
    notes: list[str] = []
    by_fk = {fk["columns"][0]: fk for fk in recorded["foreign_keys"] if len(fk["columns"]) == 1}
    columns = []
    for item in recorded["columns"]:
        name = str(item["name"])
        default = _default(item["default"])
        if item["default"] is not None and default is None and not item["identity"]:
            notes.append(f"the recorded default {item['default']} of column {name} is not restored")
        fk = by_fk.get(name)
        now = current.get(name, name)
        options = ColumnOptions(
            primary_key=name in key,
            on_delete=None if fk is None or fk["on_delete"] == "NO ACTION" else fk["on_delete"],
            server_default=default,
            renamed_from=(now,) if now != name else (),
        )
        columns.append(
            Column(
                name=name,
                type=_column_type(table, item),
                nullable=not item["not_null"],
                options=options,
                identity=bool(item["identity"]),
                ref_table=None if fk is None else fk["ref_table"],
                ref_column=None if fk is None else fk["ref_columns"][0],
                ref_schema=None if fk is None else fk["ref_schema"],
            )
        )
    by_name = {c.name: c for c in columns}
    keys = tuple(by_name[name] for name in key)
    cls = attrs.make_class(f"{table}_at_{record_id}", {}, bases=(_Recorded,))
    cls.__module__ = "orso_pg.history"
    cls.__qualname__ = f"record {record_id}"
    cls.__orso_history_label__ = label or f"record {record_id}"  # type: ignore[attr-defined]
    meta = TableMeta(
        cls=cls,
        name=table,
        schema=str(recorded["schema"]),
        columns=tuple(columns),
        key=keys,
        primary_key=keys[0] if len(keys) == 1 else None,
        unique_keys=tuple(tuple(str(c) for c in u) for u in recorded["unique"]),
        upsert_key=None,
        created_at=None,
        updated_at=None,
        indexes=tuple(
            Index(
                columns=tuple(idx["columns"]),
                method=idx["method"],
                unique=idx["unique"],
                name=idx["name"],
                opclass=idx["opclass"],
                params=tuple((str(k), int(v)) for k, v in idx["params"]),
            )
            for idx in recorded["indexes"]
        ),
        foreign_keys=tuple(
            TableForeignKey(
                columns=tuple(fk["columns"]),
                ref_table=fk["ref_table"],
                ref_columns=tuple(fk["ref_columns"]),
                ref_schema=fk["ref_schema"],
                on_delete=None if fk["on_delete"] == "NO ACTION" else fk["on_delete"],
            )
            for fk in recorded["foreign_keys"]
            if len(fk["columns"]) > 1
        ),
    )
    return meta, notes


def _column_type(table: str, item: Mapping[str, Any]) -> _types.ColumnType:
    text = str(item["type"])
    if item.get("compressed"):
        return _types.resolve_type(np.ndarray, compress=True)
    array = _ARRAYS.get(text)
    if array is not None:
        return _types.resolve_type(array)
    try:
        found = _types.type_from_sql(text, _types.resolve_type(str))
    except ValueError as exc:
        msg = f"{table}: cannot restore column {item['name']} of recorded type {text}: {exc}"
        raise MigrationError(msg, table=table, column=str(item["name"])) from None
    members = item.get("enum")
    return attrs.evolve(found, choices=tuple(members)) if members else found


def _default(text: str | None) -> sql.Composable | None:
    if text is None:
        return None
    known = _KNOWN_DEFAULTS.get(text)
    if known is not None:
        return known
    if text in ("true", "false"):
        return sql.Literal(text == "true")
    quoted = _QUOTED.match(text)
    if quoted is not None:
        return sql.Literal(quoted.group(1).replace("''", "'"))
    number = _NUMBER.match(text)
    if number is not None:
        try:
            value = Decimal(number.group(1))
        except InvalidOperation:  # pragma: no cover - the pattern only matches numbers
            return None
        return sql.Literal(int(value) if value == value.to_integral_value() else value)
    return None
