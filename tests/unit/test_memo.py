"""The bounded store behind the SQL caches: identity of held objects, and emptying when full."""

from __future__ import annotations

from orso_pg._memo import Memo


def test_held_objects_match_by_identity_not_equality() -> None:
    """A value stored around one object is not handed out for an equal but different one."""
    memo: Memo[str] = Memo()
    first, twin = ["where"], ["where"]
    assert memo.put("select", "SELECT 1", (first,)) == "SELECT 1"
    assert memo.get("select", (first,)) == "SELECT 1"
    assert memo.get("select", (twin,)) is None
    assert memo.get("delete", (first,)) is None
    assert memo.get("select") is None


def test_a_full_memo_starts_over() -> None:
    """Storing past the size empties the store first, so it never holds more than the size."""
    memo: Memo[int] = Memo(size=3)
    for n in range(3):
        memo.put(n, n)
    assert [memo.get(n) for n in range(3)] == [0, 1, 2]
    memo.put(3, 3)
    assert [memo.get(n) for n in range(4)] == [None, None, None, 3]
