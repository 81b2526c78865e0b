"""Model metadata: the ``@table`` decorator, the ``column()`` field wrapper and their validation.

Owns :class:`Column` and :class:`TableMeta`, the frozen description of a model that every other
part reads, and the checks that run once when a class is decorated (so a bad model fails at import,
naming the class and field). It must not build SQL text beyond type names, talk to a database or
convert row values: the compiler and the executor read this metadata.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, TypedDict, TypeVar, Unpack, dataclass_transform, overload

import attrs
from psycopg import sql

from orso_pg import _partition, _types, _vector
from orso_pg._partition import Placement
from orso_pg.errors import DefinitionError

__all__ = [
    "Column",
    "ColumnOptions",
    "ForeignKey",
    "Index",
    "TableForeignKey",
    "TableMeta",
    "column",
    "identifier_problem",
    "models",
    "table",
    "table_of",
]

METADATA_KEY: Final = "orso_pg.column"
MAX_IDENTIFIER_BYTES: Final = 63

OnDelete = Literal["CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT", "NO ACTION"]
IndexMethod = Literal["btree", "brin", "hash", "gin", "gist", "hnsw", "ivfflat"]
VectorDistance = Literal["l2", "cosine", "inner_product", "l1"]
_ON_DELETE: Final = ("CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT", "NO ACTION")
_INDEX_METHODS: Final = ("btree", "brin", "hash", "gin", "gist")
_VECTOR_METHODS: Final = ("hnsw", "ivfflat")

T = TypeVar("T")
C = TypeVar("C", bound=type)


@attrs.frozen
class ColumnOptions:
    """What ``column()`` recorded on an attrs field (the field's metadata value)."""

    primary_key: bool = False
    unique: bool = False
    ref: str | type | None = None
    on_delete: str | None = None
    sql_type: str | None = None
    created_at: bool = False
    updated_at: bool = False
    compress: bool = False
    decimals: int | None = None
    round: bool = False
    vector: int | None = None
    index: bool | str = False
    server_default: object = None
    renamed_from: tuple[str, ...] = ()
    half: bool = False
    sparse: bool = False
    distance: str | None = None
    m: int | None = None
    ef_construction: int | None = None
    lists: int | None = None


class ColumnArgs(TypedDict, total=False):
    """The keyword options of :func:`column` besides ``default`` and ``factory``."""

    primary_key: bool
    unique: bool
    ref: str | type | None
    on_delete: OnDelete | None
    sql_type: str | None
    created_at: bool
    updated_at: bool
    compress: bool
    decimals: int | None
    round: bool
    vector: int | None
    index: bool | IndexMethod
    server_default: object
    renamed_from: str | Sequence[str]
    half: bool
    sparse: bool
    distance: VectorDistance | None
    m: int | None
    ef_construction: int | None
    lists: int | None
    validator: Any
    converter: Any
    repr: bool
    eq: bool
    kw_only: bool


# Options handed to attrs.field as they are; every other one lands in ColumnOptions.
_ATTRS_ARGS: Final = ("validator", "converter", "repr", "eq", "kw_only")


@overload
def column(*, default: T, **options: Unpack[ColumnArgs]) -> T: ...
@overload
def column(*, factory: Callable[[], T], **options: Unpack[ColumnArgs]) -> T: ...
@overload
def column(**options: Unpack[ColumnArgs]) -> Any: ...
def column(
    *,
    default: Any = attrs.NOTHING,
    factory: Callable[[], Any] | None = None,
    **options: Unpack[ColumnArgs],
) -> Any:
    """Declare a model field with column options; a wrapper around :func:`attrs.field`.

    Args:
        default: The attrs default value.
        factory: The attrs default factory.
        primary_key: The field is the primary key. ``str | None`` gets a UUID text default,
            ``uuid.UUID | None`` a UUID default, ``int | None`` an identity column.
        unique: The column is unique on its own (and a candidate upsert key).
        ref: A foreign key to this table (a name or a model class); it references that model's
            primary key (``id`` when the table is not a known model).
        on_delete: The foreign key's ``ON DELETE`` action.
        sql_type: Store the value in this SQL type instead of the mapped one (orso's ``type=``).
        created_at: Set by the server when the row is inserted; never updated.
        updated_at: Set by the server on insert and on every update.
        compress: Store ``np.ndarray`` / ``list[int]`` / ``list[float]`` as a codec frame in BYTEA.
        decimals: With ``compress``: round floats to this many decimals (lossy, opt-in).
        round: Round what the declared ``sql_type`` cannot hold exactly as PostgreSQL
            would, instead of refusing it: ``numeric(p, s)`` to the scale (half away from
            zero), ``real`` to the nearest float4, ``timestamp(p)``, ``time(p)`` and
            ``interval(p)`` to ``p`` fractional digits of a second.
        vector: A pgvector ``vector(N)`` column of this many dimensions (``list[float]`` or
            ``NDArray[np.float32]``); needs the ``vector`` extra.
        index: Create an index on the column (``True`` for btree, or the method name);
            ``"hnsw"`` or ``"ivfflat"`` for a vector column.
        server_default: A column default: a Python value (bound as a literal) or a
            :mod:`psycopg.sql` object such as ``sql.SQL("now()")``.
        renamed_from: Former names of the column; migrations rename instead of dropping.
        half: With ``vector``: store ``halfvec(N)`` (float16, half the space).
        sparse: With ``vector``: store ``sparsevec(N)``; values are ``dict[int, float]``.
        distance: With ``vector``: the distance the column's index serves and queries use by
            default: ``"l2"`` (the default), ``"cosine"``, ``"inner_product"`` or ``"l1"``.
        m: With ``index="hnsw"``: the index's ``m`` (links per node).
        ef_construction: With ``index="hnsw"``: the index's ``ef_construction``.
        lists: With ``index="ivfflat"``: the number of inverted lists.
        validator: Passed to :func:`attrs.field`.
        converter: Passed to :func:`attrs.field`.
        repr: Passed to :func:`attrs.field`.
        eq: Passed to :func:`attrs.field`.
        kw_only: Passed to :func:`attrs.field`.

    Returns:
        An attrs field definition carrying the options in its metadata.
    """
    unknown = set(options) - set(ColumnArgs.__annotations__)
    if unknown:
        msg = f"column() got unknown option(s): {', '.join(sorted(unknown))}"
        raise TypeError(msg)
    given: dict[str, Any] = dict(options)
    field_args = {name: given.pop(name) for name in _ATTRS_ARGS if name in given}
    renamed = given.get("renamed_from", ())
    given["renamed_from"] = (renamed,) if isinstance(renamed, str) else tuple(renamed)
    return attrs.field(
        default=default if factory is None else attrs.Factory(factory),
        validator=field_args.get("validator"),
        converter=field_args.get("converter"),
        repr=field_args.get("repr", True),
        eq=field_args.get("eq", True),
        kw_only=field_args.get("kw_only", True),
        metadata={METADATA_KEY: ColumnOptions(**given)},
    )


@attrs.frozen(eq=False)
class Column:
    """One column of a model, resolved and validated.

    Attributes:
        name: The attribute name, which is also the column name.
        type: How values are stored.
        nullable: The column accepts NULL (the annotation is ``X | None``).
        options: What ``column()`` declared.
        generated: The server fills the value when the instance holds ``None`` (a generated
            key, a timestamp or a server default); such columns are NOT NULL in the table
            unless the annotation allows None for other reasons.
        identity: The column is a ``GENERATED BY DEFAULT AS IDENTITY`` key.
        ref_table: The referenced table name for a foreign key.
        ref_column: The referenced column name for a foreign key.
        ref_schema: The referenced table's schema, when it is a model declared with one.
    """

    name: str
    type: _types.ColumnType
    nullable: bool
    options: ColumnOptions
    generated: bool = False
    identity: bool = False
    ref_table: str | None = None
    ref_column: str | None = None
    ref_schema: str | None = None

    @property
    def primary_key(self) -> bool:
        """Whether this is the primary key."""
        return self.options.primary_key

    @property
    def not_null(self) -> bool:
        """Whether the table column is NOT NULL."""
        return self.options.primary_key or not self.nullable or self.generated


@attrs.frozen
class Index:
    """A secondary index of a table.

    ``opclass`` and ``params`` are set for vector indexes: the operator class of the
    distance and the ``WITH (...)`` storage parameters (``m``, ``ef_construction``, ``lists``).
    """

    columns: tuple[str, ...]
    method: str = "btree"
    unique: bool = False
    name: str | None = None
    opclass: str | None = None
    params: tuple[tuple[str, int], ...] = ()


def _names(value: str | Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _maybe_names(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else _names(value)


@attrs.frozen
class ForeignKey:
    """A foreign key over several columns, declared with ``@table(foreign_keys=[...])``.

    A single column references another table with ``column(ref=...)``; a group of columns
    (a composite key such as ``(venue, symbol)``) is declared on the table instead, so the
    order of the columns on both sides is written once, in one place.

    Attributes:
        columns: The referencing columns of this model, in order.
        ref: The referenced model class, or a table name.
        ref_columns: The referenced columns, in the same order; by default the referenced
            model's primary key.
        on_delete: The ``ON DELETE`` action, as for ``column(on_delete=...)``.
    """

    columns: tuple[str, ...] = attrs.field(converter=_names)
    ref: str | type
    ref_columns: tuple[str, ...] | None = attrs.field(default=None, converter=_maybe_names)
    on_delete: OnDelete | None = None


@attrs.frozen
class TableForeignKey:
    """A resolved :class:`ForeignKey`: the referenced table's name and schema are known."""

    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    ref_schema: str | None
    on_delete: str | None


@attrs.frozen(eq=False)
class TableMeta:
    """Everything orso_pg knows about a model class, built once by ``@table``.

    Attributes:
        cls: The model class.
        name: The default table name.
        schema: The schema, or None to follow the connection's ``search_path``.
        columns: The columns in declaration order.
        key: The primary key's columns in key order: one for a single-column key, several
            for a composite key, none for a model without a key.
        primary_key: The primary key column when the key is a single column; None for a
            composite key (see ``key``) and for a model without a key.
        unique_keys: Every declared unique key, single columns first.
        upsert_key: The key ``upsert`` conflicts on, when one can be chosen.
        created_at: The creation timestamp column, if any.
        updated_at: The update timestamp column, if any.
        indexes: Secondary indexes, from ``column(index=...)`` and ``@table(indexes=...)``.
        foreign_keys: Foreign keys over several columns, from ``@table(foreign_keys=...)``.
        placement: Partitioning, tablespaces and Citus distribution (:class:`Placement`).
    """

    cls: type
    name: str
    schema: str | None
    columns: tuple[Column, ...]
    key: tuple[Column, ...]
    primary_key: Column | None
    unique_keys: tuple[tuple[str, ...], ...]
    upsert_key: tuple[str, ...] | None
    created_at: Column | None
    updated_at: Column | None
    indexes: tuple[Index, ...]
    foreign_keys: tuple[TableForeignKey, ...] = ()
    placement: Placement = attrs.field(factory=Placement)
    by_name: Mapping[str, Column] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "by_name", {c.name: c for c in self.columns})

    @property
    def composite(self) -> bool:
        """Whether the primary key has several columns."""
        return len(self.key) > 1

    @property
    def key_names(self) -> tuple[str, ...]:
        """The primary key's column names in key order (empty without a key)."""
        return tuple(c.name for c in self.key)

    @property
    def column_names(self) -> tuple[str, ...]:
        """The column names in declaration order."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        """Return the column called *name*.

        Raises:
            QueryError: the model has no such column; the message lists the columns it has.
        """
        found = self.by_name.get(name)
        if found is None:
            from orso_pg.errors import QueryError

            msg = (
                f"{self.cls.__name__} has no column {name!r}; "
                f"columns are: {', '.join(self.column_names)}"
            )
            raise QueryError(msg, table=self.name, column=str(name), value=name)
        return found

    def qualified(self, table_name: str | None = None) -> sql.Identifier:
        """Return the table's identifier, schema-qualified when the model has a schema."""
        name = table_name if table_name is not None else self.name
        if self.schema is not None and table_name is None:
            return sql.Identifier(self.schema, name)
        return sql.Identifier(name)


_REGISTRY: dict[str, TableMeta] = {}


def models() -> Mapping[str, TableMeta]:
    """Return every decorated model by table name (the latest definition wins)."""
    return dict(_REGISTRY)


# Tables used through ``_with_table`` methods, by name: errors about a table name the model
# registry does not know can still say which model it was used with.
_USED_AS: dict[str, TableMeta] = {}


def note_table(name: str, meta: TableMeta) -> None:
    """Record that *meta*'s model is used with the table *name* (a ``_with_table`` call)."""
    if _USED_AS.get(name) is not meta:
        _USED_AS[name] = meta


def model_of_table(name: str) -> TableMeta | None:
    """Return the model last used with the table *name*, or the one declaring it, or None."""
    return _USED_AS.get(name) or _REGISTRY.get(name)


def table_of(cls: object) -> TableMeta:
    """Return the metadata of a model class (or instance).

    Raises:
        DefinitionError: *cls* was not decorated with ``@table``.
    """
    target = cls if isinstance(cls, type) else type(cls)
    meta = target.__dict__.get("__orso_table__")
    if meta is None:
        msg = f"{target.__qualname__} is not an orso_pg model; decorate it with @table(...)"
        raise DefinitionError(msg)
    return typing.cast("TableMeta", meta)


@dataclass_transform(kw_only_default=True, field_specifiers=(column, attrs.field))
def table(
    name: str | None = None,
    *,
    schema: str | None = None,
    unique: Iterable[Sequence[str]] = (),
    indexes: Iterable[Sequence[str] | Index] = (),
    upsert_key: Sequence[str] | None = None,
    primary_key: Sequence[str] | None = None,
    foreign_keys: Iterable[ForeignKey] = (),
    partition_by: _partition.Partitioning | None = None,
    tablespace: str | None = None,
    index_tablespace: str | None = None,
    distribute_by: str | None = None,
    colocate_with: type | str | None = None,
    reference: bool = False,
    require_distribution: bool = False,
) -> Callable[[C], C]:
    """Turn a class into an orso_pg model stored in table *name*.

    The class may already be an attrs class; a plain annotated class is made one with
    ``attrs.define(kw_only=True)``. Every attrs field is a column.

    Args:
        name: The table name; the class name lower-cased when omitted (as orso does).
        schema: A schema to qualify the table with; by default the ``search_path`` decides.
        unique: Composite unique keys, each a sequence of field names.
        indexes: Extra indexes: sequences of field names, or :class:`Index` values.
        upsert_key: The key ``upsert`` conflicts on when the model has several unique keys.
        primary_key: A composite primary key: field names in key order, e.g.
            ``("symbol", "ts")`` (instead of ``column(primary_key=True)`` on the fields, which
            keeps their declaration order).
        foreign_keys: Foreign keys over several columns (:class:`ForeignKey`).
        partition_by: ``partition.range("ts", every="1 day")`` or ``partition.list("symbol")``:
            the table is partitioned, and partitions are made as rows need them. Primary and
            unique keys must include the partition column.
        tablespace: The table's tablespace (for a partitioned table, new partitions' one).
        index_tablespace: The tablespace of the table's indexes, keys' indexes included.
        distribute_by: On Citus, distribute the table by this column
            (``create_distributed_table``); unique keys must include it.
        colocate_with: On Citus, co-locate with this model (or table name).
        reference: On Citus, a reference table (``create_reference_table``).
        require_distribution: Fail migrations on a server without the ``citus`` extension
            instead of skipping the distribution.

    Returns:
        A class decorator.

    Raises:
        DefinitionError: the model is invalid; the message names the class and the field.
    """
    composite = tuple(tuple(key) for key in unique)
    extra_indexes = tuple(
        idx if isinstance(idx, Index) else Index(columns=tuple(idx)) for idx in indexes
    )
    chosen_key = tuple(upsert_key) if upsert_key is not None else None
    table_key = _key_names(primary_key)
    table_fks = tuple(foreign_keys)
    placing = {
        "partition_by": partition_by,
        "tablespace": tablespace,
        "index_tablespace": index_tablespace,
        "distribute_by": distribute_by,
        "colocate_with": colocate_with,
        "reference": reference,
        "require_distribution": require_distribution,
    }

    def decorate(cls: C) -> C:
        if "__attrs_attrs__" not in cls.__dict__:
            cls = attrs.define(kw_only=True)(cls)
        meta = _build(
            cls,
            name if name is not None else cls.__name__.lower(),
            schema,
            composite,
            extra_indexes,
            chosen_key,
            table_key,
            table_fks,
            placing,
        )
        cls.__orso_table__ = meta  # type: ignore[attr-defined]
        _REGISTRY[meta.name] = meta
        return cls

    return decorate


def _key_names(primary_key: Sequence[str] | None) -> tuple[str, ...] | None:
    if primary_key is None:
        return None
    if isinstance(primary_key, str):
        return (primary_key,)
    return tuple(primary_key)


def _fail(cls: type, field: str | None, message: str) -> typing.NoReturn:
    where = f"{cls.__qualname__}.{field}" if field else cls.__qualname__
    raise DefinitionError(f"{where}: {message}", column=field)


def identifier_problem(ident: str) -> str | None:
    """Return why *ident* cannot be a quoted PostgreSQL identifier as it is, or None.

    The one rule for every name that reaches SQL: model tables, columns and schemas here,
    ``_with_table`` names and query aliases where they are given.
    """
    if not ident:
        return "is empty"
    if "\x00" in ident:
        return "contains NUL"
    if "%" in ident:
        # psycopg reads % in a statement's text as a placeholder, even inside a quoted name.
        return "contains %, which psycopg reads as a placeholder"
    size = len(ident.encode("utf-8"))
    if size > MAX_IDENTIFIER_BYTES:
        return (
            f"is {size} bytes; PostgreSQL keeps only {MAX_IDENTIFIER_BYTES} "
            "and would silently truncate it"
        )
    return None


def _check_identifier(cls: type, field: str | None, kind: str, ident: str) -> None:
    problem = identifier_problem(ident)
    if problem is not None:
        _fail(cls, field, f"{kind} name {ident!r} {problem}")


def _hints(cls: type) -> dict[str, Any]:
    # Without globalns, each class in the MRO resolves its own annotations in its own module,
    # so a model may subclass one defined elsewhere.
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError) as exc:
        _fail(cls, None, f"cannot resolve the type annotations ({exc})")


def _build(
    cls: type,
    name: str,
    schema: str | None,
    composite: tuple[tuple[str, ...], ...],
    extra_indexes: tuple[Index, ...],
    upsert_key: tuple[str, ...] | None,
    table_key: tuple[str, ...] | None = None,
    table_fks: tuple[ForeignKey, ...] = (),
    placing: Mapping[str, Any] | None = None,
) -> TableMeta:
    _check_identifier(cls, None, "table", name)
    if schema is not None:
        _check_identifier(cls, None, "schema", schema)
    hints = _hints(cls)
    columns = [_build_column(cls, f, hints.get(f.name, f.type)) for f in attrs.fields(cls)]

    columns, keys = _key_columns(cls, columns, table_key)
    by_name = {c.name: c for c in columns}
    for label, attr in (("created_at", "created_at"), ("updated_at", "updated_at")):
        flagged = [c for c in columns if getattr(c.options, attr)]
        if len(flagged) > 1:
            _fail(cls, flagged[1].name, f"two {label} columns")

    unique_keys: list[tuple[str, ...]] = [(c.name,) for c in columns if c.options.unique]
    for key in composite:
        if not key:
            _fail(cls, None, "an empty composite unique key")
        for part in key:
            if part not in by_name:
                _fail(cls, None, f"unique key {key} names unknown field {part!r}")
        unique_keys.append(key)

    indexes: list[Index] = []
    for c in columns:
        if c.options.index in _VECTOR_METHODS:
            indexes.append(_vector_index(c))
        elif c.options.index:
            method = "btree" if c.options.index is True else str(c.options.index)
            indexes.append(Index(columns=(c.name,), method=method))
    for idx in extra_indexes:
        for part in idx.columns:
            if part not in by_name:
                _fail(cls, None, f"index {idx.columns} names unknown field {part!r}")
        if idx.method not in _INDEX_METHODS:
            _fail(cls, None, f"index method {idx.method!r} is not one of {_INDEX_METHODS}")
        indexes.append(idx)

    key_names = tuple(c.name for c in keys)
    if upsert_key is not None:
        if upsert_key not in unique_keys and (not keys or upsert_key != key_names):
            _fail(cls, None, f"upsert_key {upsert_key} is not a declared unique key")
        chosen: tuple[str, ...] | None = upsert_key
    elif len(unique_keys) == 1:
        chosen = unique_keys[0]
    elif not unique_keys and keys and not any(c.generated for c in keys):
        # A natural primary key (every column supplied by the caller, one or several) is the
        # row's identity: it is the conflict key upserts mean. A generated part would never
        # conflict on a new row.
        chosen = key_names
    else:
        chosen = None

    placement = _partition.resolve(
        cls,
        {c.name: (c.type, c.nullable and not c.primary_key, c.generated) for c in columns},
        key_names,
        unique_keys,
        **(placing or {}),
    )
    for label in ("tablespace", "index_tablespace"):
        space = getattr(placement, label)
        if space is not None:
            _check_identifier(cls, None, label, space)

    return TableMeta(
        cls=cls,
        name=name,
        schema=schema,
        columns=tuple(columns),
        key=tuple(keys),
        primary_key=keys[0] if len(keys) == 1 else None,
        unique_keys=tuple(unique_keys),
        upsert_key=chosen,
        created_at=next((c for c in columns if c.options.created_at), None),
        updated_at=next((c for c in columns if c.options.updated_at), None),
        indexes=tuple(indexes),
        foreign_keys=tuple(_foreign_key(cls, by_name, fk) for fk in table_fks),
        placement=placement,
    )


def _key_columns(
    cls: type, columns: list[Column], table_key: tuple[str, ...] | None
) -> tuple[list[Column], list[Column]]:
    """Return the columns with the key marked, and the key's columns in key order.

    The key is ``@table(primary_key=...)`` in the order given, else the fields declared
    ``column(primary_key=True)`` in declaration order, else orso's default: the field ``id``.
    """
    flagged = [c.name for c in columns if c.primary_key]
    if table_key is not None:
        if not table_key:
            _fail(cls, None, "primary_key= names no field")
        if flagged and set(flagged) != set(table_key):
            _fail(
                cls,
                flagged[0],
                f"column(primary_key=True) on {', '.join(flagged)} disagrees with "
                f"@table(primary_key={table_key})",
            )
        names = [c.name for c in columns]
        for part in table_key:
            if part not in names:
                _fail(cls, None, f"primary_key {table_key} names unknown field {part!r}")
        if len(set(table_key)) != len(table_key):
            _fail(cls, None, f"primary_key {table_key} names a field twice")
        wanted: tuple[str, ...] = table_key
    elif flagged:
        wanted = tuple(flagged)
    else:
        wanted = ("id",) if any(c.name == "id" for c in columns) else ()
    marked = [
        _finish_key(cls, attrs.evolve(c, options=attrs.evolve(c.options, primary_key=True)))
        if c.name in wanted and (not c.primary_key or table_key is not None)
        else c
        for c in columns
    ]
    by_name = {c.name: c for c in marked}
    keys = [by_name[n] for n in wanted]
    for c in keys:
        if c.options.compress:
            _fail(cls, c.name, "a compressed column cannot be in the primary key")
    return marked, keys


def _foreign_key(cls: type, by_name: Mapping[str, Column], fk: object) -> TableForeignKey:
    if not isinstance(fk, ForeignKey):
        _fail(cls, None, f"foreign_keys= takes ForeignKey values, not {fk!r}")
    if not fk.columns:
        _fail(cls, None, "a foreign key names no column")
    for part in fk.columns:
        if part not in by_name:
            _fail(cls, None, f"foreign key {fk.columns} names unknown field {part!r}")
    if fk.on_delete is not None and fk.on_delete.upper() not in _ON_DELETE:
        _fail(cls, None, f"on_delete must be one of {_ON_DELETE}, not {fk.on_delete!r}")
    ref_schema = None
    known: TableMeta | None
    if isinstance(fk.ref, type):
        target = table_of(fk.ref)
        ref_table, ref_schema, known = target.name, target.schema, target
    elif isinstance(fk.ref, str):
        ref_table, known = fk.ref, _REGISTRY.get(fk.ref)
    else:
        _fail(cls, None, f"a foreign key's ref must be a model or a table name, not {fk.ref!r}")
    _check_identifier(cls, None, "referenced table", ref_table)
    if fk.ref_columns is not None:
        ref_columns = fk.ref_columns
    elif known is not None and known.key:
        ref_columns = known.key_names
    else:
        _fail(cls, None, f"foreign key {fk.columns} -> {ref_table}: give ref_columns=")
    if len(ref_columns) != len(fk.columns):
        _fail(
            cls,
            None,
            f"foreign key {fk.columns} has {len(fk.columns)} columns but references "
            f"{len(ref_columns)} ({', '.join(ref_columns)}) of {ref_table}",
        )
    for part in ref_columns:
        _check_identifier(cls, None, "referenced column", part)
    action = None if fk.on_delete is None else fk.on_delete.upper()
    return TableForeignKey(fk.columns, ref_table, ref_columns, ref_schema, action)


def _shadowed_method(cls: type, name: str) -> type | None:
    """Return the base class whose method a field called *name* would hide, if any."""
    for base in cls.__mro__[1:]:
        found = base.__dict__.get(name)
        if callable(found) or isinstance(found, (classmethod, staticmethod, property)):
            return base
    return None


def _build_column(cls: type, field: attrs.Attribute[Any], annotation: Any) -> Column:
    options = field.metadata.get(METADATA_KEY, ColumnOptions())
    name = field.name
    _check_identifier(cls, name, "column", name)
    hidden = _shadowed_method(cls, name)
    if hidden is not None:
        _fail(cls, name, f"the field would hide the method {hidden.__name__}.{name}(); rename it")
    if annotation is None or isinstance(annotation, str):
        _fail(cls, name, f"cannot resolve the annotation {annotation!r}")
    inner, nullable = _types.unwrap_optional(annotation)
    _check_vector_options(cls, name, options)
    if options.vector is not None and (options.compress or options.sql_type is not None):
        _fail(cls, name, "vector= cannot be combined with compress= or sql_type=")
    try:
        if options.vector is not None:
            ctype = _vector.column_type(
                inner, options.vector, half=options.half, sparse=options.sparse
            )
        else:
            ctype = _types.resolve_type(inner, compress=options.compress, decimals=options.decimals)
        if options.sql_type is not None:
            if options.compress:
                _fail(cls, name, "sql_type= and compress=True cannot be combined")
            base = _types.JSONB if options.sql_type.strip().lower() in ("json", "jsonb") else ctype
            ctype = _types.type_from_sql(options.sql_type, base, round_to_scale=options.round)
        elif options.round:
            _fail(cls, name, "round=True needs a sql_type that rounds, such as numeric(p, s)")
    except (TypeError, ValueError) as exc:
        _fail(cls, name, str(exc))

    if options.on_delete is not None:
        if options.ref is None:
            _fail(cls, name, "on_delete= needs ref=")
        if options.on_delete.upper() not in _ON_DELETE:
            _fail(cls, name, f"on_delete must be one of {_ON_DELETE}, not {options.on_delete!r}")
    if options.decimals is not None and not 0 <= options.decimals <= 18:  # noqa: PLR2004
        _fail(cls, name, "decimals must be between 0 and 18")
    if (
        options.index
        and options.index is not True
        and options.index not in _INDEX_METHODS + _VECTOR_METHODS
    ):
        _fail(cls, name, f"index must be True or one of {_INDEX_METHODS + _VECTOR_METHODS}")
    for old in options.renamed_from:
        _check_identifier(cls, name, "former column", old)
    timestamps = options.created_at or options.updated_at
    if timestamps and ctype is not _types.TIMESTAMPTZ:
        _fail(cls, name, "created_at/updated_at columns must be datetime (TIMESTAMPTZ)")
    if options.created_at and options.updated_at:
        _fail(cls, name, "a column cannot be both created_at and updated_at")
    if options.compress and options.primary_key:
        _fail(cls, name, "a compressed column cannot be the primary key")

    ref_table = ref_column = ref_schema = None
    if options.ref is not None:
        if isinstance(options.ref, type):
            target: TableMeta | None = table_of(options.ref)
            assert target is not None  # noqa: S101 - table_of raises otherwise
            ref_table, ref_schema = target.name, target.schema
        else:
            ref_table = options.ref
            target = _REGISTRY.get(ref_table)
        if target is not None and target.composite:
            _fail(
                cls,
                name,
                f"ref={ref_table!r} has a composite primary key ({', '.join(target.key_names)}); "
                "reference it from a group of columns with "
                "@table(foreign_keys=[ForeignKey((...), ...)])",
            )
        ref_column = target.primary_key.name if target and target.primary_key else "id"
        _check_identifier(cls, name, "referenced table", ref_table)

    column = Column(
        name=name,
        type=ctype,
        nullable=nullable,
        options=options,
        generated=timestamps or options.server_default is not None,
        ref_table=ref_table,
        ref_column=ref_column,
        ref_schema=ref_schema,
    )
    if options.server_default is not None and not isinstance(
        options.server_default, sql.Composable
    ):
        try:
            ctype.store(options.server_default)
        except _types.Refused as exc:
            _fail(cls, name, f"server_default {options.server_default!r}: {exc}")
    return _finish_key(cls, column) if options.primary_key else column


def _check_vector_options(cls: type, name: str, options: ColumnOptions) -> None:
    """Refuse vector options that do not fit together (the rest is checked by the type)."""
    vector_only = {
        "half": options.half,
        "sparse": options.sparse,
        "distance": options.distance is not None,
        "m": options.m is not None,
        "ef_construction": options.ef_construction is not None,
        "lists": options.lists is not None,
    }
    if options.vector is None:
        given = [k for k, v in vector_only.items() if v]
        if given:
            _fail(cls, name, f"{', '.join(given)}= only apply to vector columns (vector=N)")
        if options.index in _VECTOR_METHODS:
            _fail(cls, name, f"index={options.index!r} needs a vector column (vector=N)")
        return
    if isinstance(options.vector, bool) or not isinstance(options.vector, int):
        _fail(cls, name, f"vector= takes the number of dimensions, not {options.vector!r}")
    if not 1 <= options.vector <= _MAX_DIMENSIONS:
        _fail(cls, name, f"vector dimensions must be between 1 and {_MAX_DIMENSIONS}")
    if options.distance is not None and options.distance not in _vector.DISTANCES:
        _fail(cls, name, f"distance must be one of {tuple(_vector.DISTANCES)}")
    if options.index not in _VECTOR_METHODS and options.index:
        _fail(cls, name, 'a vector column\'s index is "hnsw" or "ivfflat"')
    hnsw = {"m": options.m, "ef_construction": options.ef_construction}
    ivf = {"lists": options.lists}
    for method, params in (("hnsw", hnsw), ("ivfflat", ivf)):
        for key, value in params.items():
            if value is None:
                continue
            if options.index != method:
                _fail(cls, name, f"{key}= applies to index={method!r}")
            if not _positive_int(value):
                _fail(cls, name, f"{key} must be a positive int, not {value!r}")
    if options.index == "ivfflat" and (options.distance == "l1" or options.sparse):
        _fail(cls, name, "ivfflat indexes support neither the l1 distance nor sparse vectors")


def _positive_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


# pgvector's largest vector(N); indexes allow fewer (2,000 for vector, 4,000 for halfvec).
_MAX_DIMENSIONS: Final = 16000


def _vector_index(column: Column) -> Index:
    opts = column.options
    kind = _vector.kind_of(column.type) or "vector"
    params = [("m", opts.m), ("ef_construction", opts.ef_construction), ("lists", opts.lists)]
    return Index(
        columns=(column.name,),
        method=str(opts.index),
        opclass=_vector.opclass(kind, opts.distance or "l2"),
        params=tuple(sorted((k, v) for k, v in params if v is not None)),
    )


def _finish_key(cls: type, column: Column) -> Column:
    """Decide how a primary key gets its value: generated when the annotation allows None."""
    if not column.nullable:
        return column  # a natural key the caller always supplies
    ctype = column.type
    if ctype is _types.BIGINT:
        return attrs.evolve(column, generated=True, identity=True)
    if ctype in (_types.TEXT, _types.UUID) or column.options.server_default is not None:
        return attrs.evolve(column, generated=True)
    _fail(
        cls,
        column.name,
        f"an optional primary key of type {ctype.label} has no generated default; "
        "use str, uuid.UUID or int, or give server_default=",
    )
