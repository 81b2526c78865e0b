"""Property-based testing of orso_pg models: hypothesis strategies, helpers and a pytest plugin.

- :func:`strategy`, :func:`strategies_for`, :func:`batches`: hypothesis strategies of valid
  model instances, derived from the columns (:mod:`orso_pg.testing.strategies`).
- :func:`differences`: compare what was written with what was read back.
- :func:`migrate`, :func:`fresh_tables`: tables for a test.
- ``pytest -p orso_pg.testing.plugin`` (or ``-p orso_pg.testing``): the ``orso_server``,
  ``orso_db``, ``orso_migrate`` and ``orso_fresh`` fixtures (:mod:`orso_pg.testing.plugin`).

This package owns nothing of the ORM itself and nothing in orso_pg imports it. hypothesis is
not a dependency of orso_pg: the strategies import it on first use, so the helpers and the
pytest plugin work without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from orso_pg.testing.compare import differences, same_value
from orso_pg.testing.server import PgServer
from orso_pg.testing.tables import fresh_tables, migrate

if TYPE_CHECKING:
    from orso_pg.testing.strategies import batches, strategies_for, strategy, unique_keys

__all__ = [
    "PgServer",
    "batches",
    "differences",
    "fresh_tables",
    "migrate",
    "same_value",
    "strategies_for",
    "strategy",
    "unique_keys",
]

# ``pytest -p orso_pg.testing`` loads this package as a plugin, and pytest then loads these too.
pytest_plugins = ["orso_pg.testing.plugin"]

_STRATEGIES = frozenset({"batches", "strategies_for", "strategy", "unique_keys"})


def __getattr__(name: str) -> Any:
    # Loaded on first use so that importing the plugin or the helpers never needs hypothesis.
    if name in _STRATEGIES:
        return getattr(importlib.import_module("orso_pg.testing.strategies"), name)
    msg = f"module 'orso_pg.testing' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(set(globals()) | _STRATEGIES)
