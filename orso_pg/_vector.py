"""pgvector column types: ``vector(N)``, ``halfvec(N)`` and ``sparsevec(N)`` values and distances.

Owns how a ``column(vector=N)`` value is checked and bound (a ``pgvector`` object that the
package's psycopg dumpers send), how a fetched ``pgvector`` object becomes the annotated Python
type again, and the names pgvector gives each distance (operator, index operator class). The
``pgvector`` package is optional: it is imported only when a model declares a vector column,
and its absence is a :class:`~orso_pg.errors.DefinitionError` naming the ``vector`` extra. It
must not touch a connection (:mod:`orso_pg._adapters` registers the adapters) nor build
statements beyond type names and operators.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from typing import Any, Final

import attrs
import numpy as np
from psycopg import sql

from orso_pg._types import ColumnType, Refused
from orso_pg.errors import DefinitionError, describe_value

__all__ = [
    "DISTANCES",
    "KINDS",
    "Distance",
    "State",
    "column_type",
    "kind_of",
    "opclass",
    "operator",
    "pgvector",
    "state",
]

# pgvector's limits: vector and sparsevec hold float4, halfvec float2.
FLOAT16_MAX: Final = 65504.0
FLOAT32_MAX: Final = float(np.finfo(np.float32).max)
KINDS: Final = ("vector", "halfvec", "sparsevec")


@attrs.frozen
class Distance:
    """One of pgvector's distances: its operator and its index operator-class suffix."""

    name: str
    operator: str
    ops: str


DISTANCES: Final[Mapping[str, Distance]] = {
    "l2": Distance("l2", "<->", "l2_ops"),
    "cosine": Distance("cosine", "<=>", "cosine_ops"),
    # <#> is the *negative* inner product, so that smaller is closer like the others.
    "inner_product": Distance("inner_product", "<#>", "ip_ops"),
    "l1": Distance("l1", "<+>", "l1_ops"),
}
_OPERATORS: Final = {d.name: sql.SQL(d.operator) for d in DISTANCES.values()}


@attrs.define
class State:
    """Process-wide facts the adapter registration reads on every borrowed connection.

    Attributes:
        active: A model with a vector column exists, so connections need the adapters.
        generation: Bumped when the extension may have appeared (a migration created it);
            a connection found without it is probed again only after a bump.
    """

    active: bool = False
    generation: int = 0


state: Final = State()


def pgvector() -> Any:
    """Return the ``pgvector`` package, or raise naming the extra that installs it."""
    try:
        import pgvector as module
        import pgvector.psycopg
    except ImportError as exc:
        msg = f"vector columns need the pgvector package: pip install 'orso_pg[vector]' ({exc})"
        raise DefinitionError(msg) from exc
    return module


def kind_of(ctype: ColumnType) -> str | None:
    """Return ``"vector"``, ``"halfvec"`` or ``"sparsevec"`` for a vector column type, else None."""
    kind = ctype.copy_name
    return kind if kind in KINDS else None


def operator(distance: str) -> sql.SQL:
    """Return the SQL operator of *distance* (a key of :data:`DISTANCES`)."""
    return _OPERATORS[distance]


def opclass(kind: str, distance: str) -> str:
    """Return the index operator class of *distance* for a column of *kind*."""
    return f"{kind}_{DISTANCES[distance].ops}"


# --- checks -----------------------------------------------------------------------------------


def _refuse(reason: str) -> typing.NoReturn:
    raise Refused(reason)


def _dense(value: Any, dimensions: int, limit: float, limit_name: str) -> np.ndarray[Any, Any]:
    """Return *value* as a 1-D float64 array of *dimensions* finite numbers within *limit*."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            _refuse(f"expected a 1-D vector, got an array of shape {value.shape}")
        if value.dtype.kind not in "fiu":
            _refuse(f"expected numbers, got an array of {value.dtype}")
        arr = value.astype(np.float64, copy=False)
    elif isinstance(value, (list, tuple)):
        # numpy would read None as NaN and "1.5" as 1.5: every element must be a number.
        bad = next(
            (
                (i, v)
                for i, v in enumerate(value)
                if isinstance(v, bool) or not isinstance(v, (int, float, np.number))
            ),
            None,
        )
        if bad is not None:
            if isinstance(bad[1], (list, tuple, np.ndarray)):
                _refuse(f"expected a 1-D vector, got a nested sequence at element {bad[0]}")
            _refuse(f"element {bad[0]} is {describe_value(bad[1])}, not a number")
        arr = np.array(value, dtype=np.float64)
    else:
        _refuse(f"expected a list of floats or a 1-D array, got {type(value).__name__}")
    if arr.shape[0] != dimensions:
        _refuse(f"expected {dimensions} dimensions, got {arr.shape[0]}")
    finite = np.isfinite(arr)
    if not finite.all():
        i = int(np.argmin(finite))
        _refuse(f"element {i} is {arr[i]}; NaN and infinity cannot be stored in a vector")
    big = np.abs(arr) > limit
    if big.any():
        i = int(np.argmax(big))
        _refuse(f"element {i} is {arr[i]}, beyond the {limit_name} range (+-{limit:g})")
    return arr


def _sparse(value: Any, dimensions: int) -> tuple[dict[int, float], int]:
    """Return *value* (a mapping of index to number) checked against *dimensions*."""
    if isinstance(value, Mapping):
        items = list(value.items())
    else:
        arr = _dense(value, dimensions, FLOAT32_MAX, "float32")
        nz = np.flatnonzero(arr)
        return {int(i): float(arr[i]) for i in nz}, dimensions
    out: dict[int, float] = {}
    for index, given in items:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            _refuse(f"index {describe_value(index)} is not an int")
        if not 0 <= index < dimensions:
            _refuse(f"index {index} is outside 0..{dimensions - 1} ({dimensions} dimensions)")
        if isinstance(given, bool) or not isinstance(given, (int, float, np.number)):
            _refuse(f"element {index} is {describe_value(given)}, not a number")
        number = float(given)
        if not math.isfinite(number):
            _refuse(f"element {index} is {number}; NaN and infinity cannot be stored in a vector")
        if abs(number) > FLOAT32_MAX:
            _refuse(f"element {index} is {number}, beyond the float32 range")
        if number:
            out[int(index)] = number
    return out, dimensions


# --- column types -----------------------------------------------------------------------------


def _as_numpy(annotation: Any) -> np.dtype[Any] | None:
    """Return the dtype of an ``NDArray[...]`` annotation, None for ``list[float]``."""
    if annotation == list[float] or annotation is list:
        return None
    if typing.get_origin(annotation) is np.ndarray or annotation is np.ndarray:
        args = typing.get_args(annotation)
        scalar = typing.get_args(args[1]) if len(args) == 2 else ()  # noqa: PLR2004
        return np.dtype(scalar[0]) if scalar else np.dtype(np.float32)
    msg = f"a vector column is list[float] or NDArray[np.float32], not {annotation!r}"
    raise TypeError(msg)


def column_type(annotation: Any, dimensions: int, *, half: bool, sparse: bool) -> ColumnType:
    """Return the type of a ``column(vector=N)`` field annotated *annotation*.

    ``half`` stores ``halfvec(N)`` (float16), ``sparse`` stores ``sparsevec(N)`` (values are
    ``dict[int, float]`` of the non-zero elements); otherwise ``vector(N)`` (float32).

    Raises:
        TypeError: the annotation does not fit the kind, or the options conflict.
        DefinitionError: the pgvector package is not installed.
    """
    if half and sparse:
        msg = "half=True and sparse=True cannot be combined"
        raise TypeError(msg)
    module = pgvector()
    kind = "sparsevec" if sparse else "halfvec" if half else "vector"
    ddl = sql.SQL("{}({})").format(sql.SQL(kind), sql.Literal(dimensions))
    label = f"{kind}({dimensions})"
    if sparse:
        if typing.get_origin(annotation) is not dict and annotation is not dict:
            msg = f"a sparse vector column is dict[int, float], not {annotation!r}"
            raise TypeError(msg)
        sparse_cls = module.SparseVector

        def dump_sparse(value: Any) -> Any:
            return sparse_cls(*_sparse(value, dimensions))

        def load_sparse(value: Any) -> dict[int, float]:
            return dict(zip(value.indices(), value.values(), strict=True))

        state.active = True
        return ColumnType(label, ddl, kind, dict, dump_sparse, load_sparse)

    dtype = _as_numpy(annotation)
    python: Any = list if dtype is None else np.ndarray
    if half:
        half_cls = module.HalfVector

        def dump_half(value: Any) -> Any:
            return half_cls(_dense(value, dimensions, FLOAT16_MAX, "float16").astype(np.float16))

        load = _loader(dtype)
        state.active = True
        return ColumnType(label, ddl, kind, python, dump_half, load)

    vector_cls = module.Vector
    f32 = np.float32
    all_finite = np.isfinite

    def dump(value: Any) -> Any:
        # The common case, an exact float32 array of the right length, skips the copies.
        if (
            value.__class__ is np.ndarray
            and value.dtype == f32
            and value.shape == (dimensions,)
            and all_finite(value).all()
        ):
            return vector_cls(value)
        return vector_cls(_dense(value, dimensions, FLOAT32_MAX, "float32").astype(f32))

    state.active = True
    return ColumnType(label, ddl, kind, python, dump, _loader(dtype))


def _loader(dtype: np.dtype[Any] | None) -> Any:
    if dtype is None:
        return _to_list
    if dtype == np.float32:
        return _to_float32
    return lambda value: value.to_numpy().astype(dtype)


def _to_list(value: Any) -> list[float]:
    return value.to_list()  # type: ignore[no-any-return]


def _to_float32(value: Any) -> np.ndarray[Any, Any]:
    return value.to_numpy().astype(np.float32, copy=False)  # type: ignore[no-any-return]
