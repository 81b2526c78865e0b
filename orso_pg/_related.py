"""Related rows: the parents or the children of many instances, one statement per relation.

Owns ``Orso.load_related``: following a ``ref=`` foreign key from children to their parents
(``Trade.load_related(trades, "instrument_id", db)``) or from parents to their children
(``Instrument.load_related(instruments, Trade, db)``). Each call reads the related table once,
with every key in one array parameter, so loading the relations of 10,000 rows costs one
statement, never one per row. The result is a plain dict; models stay plain attrs classes and
nothing here runs SQL when an attribute is read (there is no lazy loading).
It must not build SQL text itself: the reads go through :mod:`orso_pg._reads`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orso_pg import _reads as reads
from orso_pg._operations import check_session
from orso_pg._schema import Column, TableMeta, models, table_of
from orso_pg.errors import DefinitionError, QueryError, ValidationError
from orso_pg.query._builder import QueryBuilder
from orso_pg.query._filters import Filter, Sort, isa

__all__ = ["load_children", "load_parents", "load_related"]


def load_related(
    cls: type, instances: Iterable[Any], target: object, db: object, *, field: str | None = None
) -> dict[Any, Any]:
    """Return the related rows of *instances*, keyed by each instance's primary key.

    *target* is a field name of *cls* holding a ``ref=`` (the parent of each instance, or None
    when the field is None or names no row), or a model class whose rows reference *cls* (the
    list of each instance's children, empty for none; *field* chooses the referencing column
    when that model has several).
    """
    meta = table_of(cls)
    session = check_session(db)
    items = _instances(meta, instances)
    if isa(target, str):
        if field is not None:
            msg = "field= chooses among a child model's references; pass the field as target"
            raise QueryError(msg, table=meta.name, value=field)
        return load_parents(meta, items, str(target), session)
    if isa(target, type):
        return load_children(meta, items, table_of(target), session, field)
    msg = (
        f"load_related takes a field name of {meta.cls.__name__} holding a ref= "
        f"or a model class referencing it, not {target!r}"
    )
    raise QueryError(msg, table=meta.name, value=target)


def _instances(meta: TableMeta, instances: Iterable[Any]) -> list[Any]:
    if isa(instances, (str, bytes)) or not isa(instances, Iterable):
        msg = f"load_related needs an iterable of {meta.cls.__name__} instances, not {instances!r}"
        raise ValidationError(msg, table=meta.name, value=instances)
    items = list(instances)
    for i, item in enumerate(items):
        if not isinstance(item, meta.cls):
            msg = f"item {i} is a {type(item).__name__}, not a {meta.cls.__name__}"
            err = ValidationError(msg, table=meta.name, value=item)
            err.position = i
            raise err
    return items


def _key(meta: TableMeta, obj: object, role: str) -> Any:
    pk = meta.primary_key
    if pk is None:
        msg = f"{meta.cls.__name__} has no primary key to key the {role} by"
        raise QueryError(msg, table=meta.name)
    return getattr(obj, pk.name)


def _parent_meta(meta: TableMeta, col: Column) -> TableMeta:
    ref = col.options.ref
    if isinstance(ref, type):
        return table_of(ref)
    found = models().get(col.ref_table or "")
    if found is None:
        msg = (
            f"{meta.name}.{col.name} references table {col.ref_table!r}, "
            "which no model declares; load its rows with a model of that table"
        )
        raise QueryError(msg, table=meta.name, column=col.name)
    return found


def load_parents(
    meta: TableMeta, items: list[Any], name: str, session: object
) -> dict[Any, Any | None]:
    """Return ``{child key: parent or None}`` for the reference held in field *name*."""
    col = meta.column(name)
    if col.ref_table is None or col.ref_column is None:
        refs = [c.name for c in meta.columns if c.ref_table is not None] or ["none"]
        msg = (
            f"{meta.name}.{col.name} holds no reference (ref=); "
            f"the fields with one are: {', '.join(refs)}"
        )
        raise QueryError(msg, table=meta.name, column=col.name)
    parent = _parent_meta(meta, col)
    keys = [_key(meta, item, "parents") for item in items]
    wanted = list(dict.fromkeys(v for item in items if (v := getattr(item, col.name)) is not None))
    by_ref: dict[Any, Any] = {}
    if wanted:
        rows: list[Any] = reads.find_where(
            parent.cls, Filter.in_values(col.ref_column, wanted), session
        )
        by_ref = {getattr(p, col.ref_column): p for p in rows}
    return {key: by_ref.get(getattr(item, col.name)) for key, item in zip(keys, items, strict=True)}


def _references(child: TableMeta, parent: TableMeta) -> list[Column]:
    found = []
    for c in child.columns:
        ref = c.options.ref
        if isinstance(ref, type):
            try:
                hit = table_of(ref) is parent
            except DefinitionError:  # pragma: no cover - the schema checked it at decoration
                hit = False
        else:
            hit = c.ref_table == parent.name
        if hit:
            found.append(c)
    return found


def load_children(
    meta: TableMeta, items: list[Any], child: TableMeta, session: object, field: str | None
) -> dict[Any, list[Any]]:
    """Return ``{parent key: [children]}``: children in key order, an empty list for none."""
    refs = _references(child, meta)
    if field is not None:
        chosen = child.column(field)
        if chosen not in refs:
            names = ", ".join(c.name for c in refs) or "none"
            msg = (
                f"{child.name}.{chosen.name} does not reference {meta.name}; "
                f"the fields that do are: {names}"
            )
            raise QueryError(msg, table=child.name, column=chosen.name)
        refs = [chosen]
    if not refs:
        msg = f"{child.cls.__name__} has no field referencing {meta.name} (ref=)"
        raise QueryError(msg, table=child.name)
    if len(refs) > 1:
        names = ", ".join(c.name for c in refs)
        msg = (
            f"{child.cls.__name__} references {meta.name} through several fields ({names}); "
            "choose one with field="
        )
        raise QueryError(msg, table=child.name)
    col = refs[0]
    ref_column = meta.column(col.ref_column or "").name
    keys = [_key(meta, item, "children") for item in items]
    wanted = list(
        dict.fromkeys(v for item in items if (v := getattr(item, ref_column)) is not None)
    )
    groups: dict[Any, list[Any]] = {v: [] for v in wanted}
    if wanted:
        builder = QueryBuilder(child.cls).where(Filter.in_values(col.name, wanted))
        if child.primary_key is not None:
            builder = builder.order_by(Sort.asc(child.primary_key.name))
        children: list[Any] = reads.query(child.cls, builder, session)
        for row in children:
            groups.setdefault(getattr(row, col.name), []).append(row)
    return {
        key: list(groups.get(getattr(item, ref_column), ()))
        for key, item in zip(keys, items, strict=True)
    }
