"""Per-connection type adapters: pgvector's psycopg dumpers and loaders, registered once.

Owns registering the ``pgvector`` package's adapters on a connection: from the pool's configure
step when the connection opens, and on first use for a connection that opened before a vector
model was defined or before the extension was created. A connection of a database without the
extension is remembered as such and probed again only after a migration created it. Nothing
happens (not even an import of ``pgvector``) until a model declares a vector column. It must
not run statements other than psycopg's type lookups, and never leaves a transaction open.
"""

from __future__ import annotations

import weakref
from typing import Any, Final

import psycopg
from psycopg.types import TypeInfo

from orso_pg import _vector

__all__ = ["configure", "extension_created", "prepare"]

_REGISTERED: Final = -1
_IDLE: Final = psycopg.pq.TransactionStatus.IDLE
_INTRANS: Final = psycopg.pq.TransactionStatus.INTRANS

# connection -> _REGISTERED, or the generation at which it was found without the extension.
_seen: weakref.WeakKeyDictionary[psycopg.Connection[Any], int] = weakref.WeakKeyDictionary()


def configure(conn: psycopg.Connection[Any]) -> None:
    """The pool's configure step: register the vector adapters if any model needs them."""
    if _vector.state.active:
        prepare(conn)


def prepare(conn: psycopg.Connection[Any]) -> None:
    """Register the vector adapters on *conn* unless done (or known impossible) already."""
    seen = _seen.get(conn)
    if seen in (_REGISTERED, _vector.state.generation):
        return
    status = conn.info.transaction_status
    if status not in (_IDLE, _INTRANS) or conn.pgconn.pipeline_status:
        return  # a failed transaction or a pipeline: try on the next borrow
    _seen[conn] = _REGISTERED if _register(conn) else _vector.state.generation


def _register(conn: psycopg.Connection[Any]) -> bool:
    try:
        infos = [TypeInfo.fetch(conn, name) for name in _vector.KINDS]
    except psycopg.Error:
        return False
    if infos[0] is None:
        return False
    module = _vector.pgvector()
    adapters = conn.adapters
    for kind, info in zip(_vector.KINDS, infos, strict=True):
        if info is None:
            continue  # pgvector before 0.7 has no halfvec and sparsevec
        adapter = _ADAPTERS[kind]
        py_type = getattr(module, adapter[0])
        info.register(conn)
        text_dumper, binary_dumper, text_loader, binary_loader = (
            getattr(_submodule(kind), name) for name in adapter[1:]
        )
        # pgvector's own register_vector_info also claims every numpy array for vector, which
        # would change how other array parameters are sent: only its value classes are mapped.
        # The dumpers carry the OID so that COPY's set_types finds them.
        adapters.register_dumper(py_type, type("", (text_dumper,), {"oid": info.oid}))
        adapters.register_dumper(py_type, type("", (binary_dumper,), {"oid": info.oid}))
        adapters.register_loader(info.oid, text_loader)
        adapters.register_loader(info.oid, binary_loader)
    return True


_ADAPTERS: Final = {
    "vector": (
        "Vector",
        "VectorDumper",
        "VectorBinaryDumper",
        "VectorLoader",
        "VectorBinaryLoader",
    ),
    "halfvec": (
        "HalfVector",
        "HalfVectorDumper",
        "HalfVectorBinaryDumper",
        "HalfVectorLoader",
        "HalfVectorBinaryLoader",
    ),
    "sparsevec": (
        "SparseVector",
        "SparseVectorDumper",
        "SparseVectorBinaryDumper",
        "SparseVectorLoader",
        "SparseVectorBinaryLoader",
    ),
}


def _submodule(kind: str) -> Any:
    import importlib

    return importlib.import_module(f"pgvector.psycopg.{kind}")


def extension_created() -> None:
    """Note that the extension may exist now: connections found without it look again."""
    _vector.state.generation += 1
