"""Vector column declarations and value checks, without a database."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from orso_pg import DefinitionError, _vector, column, table
from orso_pg._types import Refused


def declare(annotation: Any, **options: Any) -> Any:
    namespace = {
        "__annotations__": {"id": int | None, "v": annotation},
        "id": column(primary_key=True, default=None),
        "v": column(**options),
    }
    return table("unit_vectors")(type("Model", (), namespace))


@pytest.mark.parametrize(
    ("annotation", "options", "message"),
    [
        (list[float], {"vector": 0}, "between 1 and 16000"),
        (list[float], {"vector": True}, "number of dimensions"),
        (list[float], {"vector": 3, "distance": "hamming"}, "distance must be one of"),
        (list[float], {"vector": 3, "index": "btree"}, 'index is "hnsw" or "ivfflat"'),
        (list[float], {"vector": 3, "index": "hnsw", "lists": 3}, "lists= applies to"),
        (list[float], {"vector": 3, "index": "hnsw", "m": 0}, "m must be a positive int"),
        (list[float], {"vector": 3, "index": "ivfflat", "distance": "l1"}, "ivfflat"),
        (list[float], {"m": 4}, "only apply to vector columns"),
        (list[float], {"index": "hnsw"}, "needs a vector column"),
        (list[float], {"vector": 3, "compress": True}, "cannot be combined"),
        (list[float], {"vector": 3, "half": True, "sparse": True}, "cannot be combined"),
        (list[int], {"vector": 3}, r"list\[float\] or NDArray"),
        (list[float], {"vector": 3, "sparse": True}, r"dict\[int, float\]"),
    ],
)
def test_bad_declarations(annotation: Any, options: dict[str, Any], message: str) -> None:
    """A vector option that does not fit fails when the class is decorated."""
    with pytest.raises(DefinitionError, match=message):
        declare(annotation, **options)


def test_array_annotations_load_their_dtype() -> None:
    """NDArray[np.float64] and halfvec columns read back as the annotated dtype."""
    wide = declare(NDArray[np.float64], vector=2).__orso_table__.column("v").type
    half = declare(NDArray[np.float16], vector=2, half=True).__orso_table__.column("v").type
    vector = wide.dump(np.array([1.5, 2.0]))
    loaded = wide.load(vector)
    assert loaded.dtype == np.float64
    assert loaded.tolist() == [1.5, 2.0]
    assert half.load(half.dump([1.5, 2.0])).dtype == np.float16


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ([1.0, None], "not a number"),
        ([[1.0], [2.0, 3.0]], "nested sequence at element 0"),
        ([1.0, "1.5"], "element 1 is '1.5', not a number"),
        ([1.0, True], "element 1 is True, not a number"),
        ({1: 1e39}, "beyond the float32 range"),
        ({True: 1.0}, "not an int"),
    ],
)
def test_value_checks(value: Any, reason: str) -> None:
    """Ragged lists, None elements and out-of-range sparse values are refused with a reason."""
    sparse = isinstance(value, dict)
    ctype = _vector.column_type(
        dict[int, float] if sparse else list[float], 2, half=False, sparse=sparse
    )
    with pytest.raises(Refused, match=reason):
        ctype.dump(value)
