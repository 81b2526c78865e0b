"""A bounded store for things built once and asked for again: compiled SQL and its bytes.

Owns the one caching rule the compiler and the query builders share: keep what was
built, empty the store when it is full (the shapes a program uses are few and repeat, so a
refill is cheap and rare), and let a key name objects by identity. It must not know what it
stores.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Memo"]

V = TypeVar("V")


class Memo(Generic[V]):
    """Values by key, at most *size* of them.

    A key may also name objects by identity (*held*, e.g. the SQL fragments a statement was
    built around): the entry keeps them alive, so their ids cannot be taken by other objects
    while it is stored, and a lookup matches only those very objects.
    """

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int = 2048) -> None:
        self._entries: dict[Hashable, tuple[tuple[object, ...], V]] = {}
        self._size = size

    def get(self, key: Hashable, held: tuple[object, ...] = ()) -> V | None:
        """Return the value stored for *key* and *held*, or None."""
        entry = self._entries.get((key, *map(id, held)))
        if entry is None or any(a is not b for a, b in zip(entry[0], held, strict=True)):
            return None
        return entry[1]

    def put(self, key: Hashable, value: V, held: tuple[object, ...] = ()) -> V:
        """Store *value* for *key* and *held*; return it."""
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[(key, *map(id, held))] = (held, value)
        return value
