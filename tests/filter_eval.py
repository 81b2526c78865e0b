"""A Python model of PostgreSQL's filter semantics, and hypothesis strategies for filter trees.

``evaluate(filter, row)`` answers what PostgreSQL answers for ``WHERE <filter>`` on one row, in
SQL's three-valued logic (True, False, or None for unknown), so a differential test can compare
the ids PostgreSQL returns with the ids this model predicts. It follows PostgreSQL where Python
differs: NaN equals NaN and sorts above every number, NULL compared with anything is unknown,
``= ANY`` / ``<> ALL`` over arrays holding NULLs, and text ordered bytewise (``COLLATE "C"``,
which the tests put on their text columns). ``sort_rows`` orders rows as ``ORDER BY`` does.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

from orso_pg.query._filters import And, Condition, Filter, Not, Or, Sort

Truth = bool | None
Row = Mapping[str, Any]

# --- comparisons ------------------------------------------------------------------------------


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def compare(a: object, b: object) -> int:
    """Return -1, 0 or 1 as PostgreSQL orders two non-NULL values of one type."""
    # PostgreSQL: NaN equals NaN and is larger than every other number.
    if isinstance(a, float) and isinstance(b, float) and (_is_nan(a) or _is_nan(b)):
        return (_is_nan(a) > _is_nan(b)) - (_is_nan(a) < _is_nan(b))
    if a == b:
        return 0
    return -1 if a < b else 1  # type: ignore[operator]


def _cmp(a: object, b: object, accept: Callable[[int], bool]) -> Truth:
    if a is None or b is None:
        return None
    return accept(compare(a, b))


def _not(v: Truth) -> Truth:
    return None if v is None else not v


def _and(values: Sequence[Truth]) -> Truth:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _or(values: Sequence[Truth]) -> Truth:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


# --- LIKE -------------------------------------------------------------------------------------


def like_regex(pattern: str) -> re.Pattern[str]:
    r"""Return the regex for a LIKE pattern (``%``, ``_``, and ``\`` as the escape)."""
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            out.append(re.escape(next(chars)))
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def fold_ascii(text: str) -> str:
    """Lower-case ASCII letters only, as ILIKE does under ``COLLATE "C"``."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _like(value: object, pattern: str, *, fold: bool) -> Truth:
    if value is None:
        return None
    assert isinstance(value, str)
    if fold:
        value, pattern = fold_ascii(value), fold_ascii(pattern)
    return like_regex(pattern).fullmatch(value) is not None


# --- evaluation -------------------------------------------------------------------------------


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _condition(c: Condition, row: Row) -> Truth:
    x = row[c.column]
    op = c.op
    simple: dict[str, Callable[[int], bool]] = {
        "eq": lambda r: r == 0,
        "ne": lambda r: r != 0,
        "lt": lambda r: r < 0,
        "le": lambda r: r <= 0,
        "gt": lambda r: r > 0,
        "ge": lambda r: r >= 0,
    }
    if op in simple:
        return _cmp(x, c.values[0], simple[op])
    if op in ("like", "ilike"):
        return _like(x, c.values[0], fold=op == "ilike")
    if op in ("not_like", "not_ilike"):
        return _not(_like(x, c.values[0], fold=op == "not_ilike"))
    if op == "is_null":
        return x is None
    if op == "is_not_null":
        return x is not None
    if op in ("between", "not_between"):
        low, high = c.values
        inside = _and([_cmp(x, low, lambda r: r >= 0), _cmp(x, high, lambda r: r <= 0)])
        return inside if op == "between" else _not(inside)
    if op == "in":
        return _or([_cmp(x, v, lambda r: r == 0) for v in c.values[0]])
    if op == "not_in":
        return _and([_cmp(x, v, lambda r: r != 0) for v in c.values[0]])
    if op == "contains":
        if x is None:
            return None
        return all(v in x for v in c.values[0])
    if op == "overlaps":
        if x is None:
            return None
        return any(v in x for v in c.values[0])
    if op == "any":
        if x is None:
            return None
        if c.values[0] is None:
            return False if not x else None  # NULL = ANY(array): false only when it is empty
        return c.values[0] in x
    if op == "has_key":
        return None if x is None else c.values[0] in x
    if op == "json_eq":
        key, value = c.values
        found = None if x is None else _json_text(x.get(key))
        return None if found is None else found == _json_text(value)
    msg = f"the model does not know {op!r}"
    raise AssertionError(msg)


def evaluate(f: Filter, row: Row) -> Truth:
    """Return what PostgreSQL's ``WHERE`` makes of *f* on *row* (None: unknown)."""
    if isinstance(f, Condition):
        return _condition(f, row)
    if isinstance(f, And):
        return _and([evaluate(item, row) for item in f.items])
    if isinstance(f, Or):
        return _or([evaluate(item, row) for item in f.items])
    if isinstance(f, Not):
        return _not(evaluate(f.item, row))
    msg = f"cannot evaluate {f!r}"
    raise AssertionError(msg)


# --- ordering ---------------------------------------------------------------------------------


def sort_rows(rows: Sequence[Row], sorts: Sequence[Sort], key: str = "id") -> list[Row]:
    """Return *rows* as ``ORDER BY <sorts>, <key>`` orders them."""

    def cmp(a: Row, b: Row) -> int:
        for s in (*sorts, Sort.asc(key)):
            x, y = a[s.column], b[s.column]
            if x is None or y is None:
                if x is None and y is None:
                    continue
                # NULL is after every value when nulls_last, before it otherwise.
                x_null_first = (x is None) != s.nulls_last
                return -1 if x_null_first else 1
            r = compare(x, y)
            if r:
                return r if s.ascending else -r
        return 0

    return sorted(rows, key=functools.cmp_to_key(cmp))


# --- strategies -------------------------------------------------------------------------------

UTC = dt.UTC


def texts() -> st.SearchStrategy[str]:
    """Text that stresses LIKE and collation: wildcards, backslashes, unicode, empty."""
    alphabet = st.one_of(
        st.sampled_from(list("aAbB%_\\ 'é É")),
        st.characters(codec="utf-8", exclude_characters="\x00"),
    )
    return st.text(alphabet, max_size=6)


def patterns() -> st.SearchStrategy[str]:
    """LIKE patterns built from literal characters, wildcards and escaped characters."""
    token = st.one_of(
        st.sampled_from(["%", "_", "a", "A", "b", "é", "É", " ", "'"]),
        st.sampled_from(["\\%", "\\_", "\\\\", "\\a"]),
        st.characters(codec="utf-8", exclude_characters="\x00\\%_"),
    )
    return st.lists(token, max_size=5).map("".join)


def floats() -> st.SearchStrategy[float]:
    """Doubles including NaN, infinities and signed zeros, with repeats likely."""
    return st.one_of(
        st.sampled_from([0.0, -0.0, 1.5, -1.5, math.inf, -math.inf, math.nan]),
        st.floats(allow_nan=True, allow_infinity=True),
    )


def ints() -> st.SearchStrategy[int]:
    """BIGINT values, small ones (and so collisions) likely."""
    return st.one_of(st.integers(-3, 3), st.integers(-(2**63), 2**63 - 1))


def timestamps() -> st.SearchStrategy[dt.datetime]:
    """Aware datetimes (microsecond precision, as TIMESTAMPTZ stores)."""
    base = [dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 1, 1, tzinfo=UTC)]
    return st.one_of(
        st.sampled_from(base),
        st.datetimes(
            min_value=dt.datetime(1900, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
            max_value=dt.datetime(2200, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
            timezones=st.just(UTC),
        ),
    )


def nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """*strategy*, or None about one time in five."""
    return st.one_of(st.none(), strategy, strategy, strategy, strategy)


def leaves(
    values: Mapping[str, st.SearchStrategy[Any]],
    *,
    text_columns: Sequence[str] = (),
) -> st.SearchStrategy[Filter]:
    """Return single conditions over *values* (column name to its value strategy)."""
    names = sorted(values)

    def for_column(name: str) -> st.SearchStrategy[Filter]:
        v = values[name]
        nv = nullable(v)
        options: list[st.SearchStrategy[Filter]] = [
            st.builds(Filter.eq, st.just(name), nv),
            st.builds(Filter.ne, st.just(name), nv),
            st.builds(Filter.lt, st.just(name), nv),
            st.builds(Filter.le, st.just(name), nv),
            st.builds(Filter.gt, st.just(name), nv),
            st.builds(Filter.ge, st.just(name), nv),
            st.builds(Filter.in_values, st.just(name), st.lists(nv, max_size=4)),
            st.builds(Filter.not_in_values, st.just(name), st.lists(nv, max_size=4)),
            st.builds(Filter.is_null, st.just(name)),
            st.builds(Filter.is_not_null, st.just(name)),
            st.builds(Filter.between, st.just(name), nv, nv),
            st.builds(Filter.not_between, st.just(name), nv, nv),
        ]
        if name in text_columns:
            options += [
                st.builds(Filter.like, st.just(name), patterns()),
                st.builds(Filter.not_like, st.just(name), patterns()),
                st.builds(Filter.ilike, st.just(name), patterns()),
                st.builds(Filter.not_ilike, st.just(name), patterns()),
            ]
        return st.one_of(options)

    return st.sampled_from(names).flatmap(for_column)


def trees(leaf: st.SearchStrategy[Filter], max_leaves: int = 12) -> st.SearchStrategy[Filter]:
    """Return filter trees of *leaf* nested with ``&``, ``|``, ``~`` and the n-ary builders."""

    def extend(children: st.SearchStrategy[Filter]) -> st.SearchStrategy[Filter]:
        pair = st.tuples(children, children)
        return st.one_of(
            pair.map(lambda p: p[0] & p[1]),
            pair.map(lambda p: p[0] | p[1]),
            children.map(lambda f: ~f),
            st.lists(children, max_size=3).map(lambda fs: Filter.all_of(*fs)),
            st.lists(children, max_size=3).map(lambda fs: Filter.any_of(*fs)),
        )

    return st.recursive(leaf, extend, max_leaves=max_leaves)
