"""The layering the README draws: a module imports only from its own layer or those below.

Modules are named by their dotted path under ``orso_pg`` (``session._database``); a package's
``__init__`` has the package's name. Only imports at module level count: a lazy import inside a
function is how an optional dependency is loaded, and is checked by the tests of that feature.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "orso_pg"

# From the bottom up; the README's Architecture section draws the same picture.
LAYERS: dict[str, int] = {
    "errors": 0,
    "_memo": 1,
    "codec": 1,
    "_types": 1,
    "_vector": 1,
    "_partition": 1,
    "_schema": 1,
    "session._cluster": 1,
    "session._embedded": 1,
    "session._pool": 1,
    "session._watchdog": 1,
    "session._connect": 1,
    "session._adbc": 1,
    "_compiler": 2,
    "query": 2,
    "query._filters": 2,
    "query._expressions": 2,
    "query._locks": 2,
    "query._raw": 2,
    "query._pagination": 2,
    "query._vector": 2,
    "query._columns": 2,
    "query._builder": 2,
    "query._results": 2,
    "migrate._placement": 2,
    "migrate._ddl": 2,
    "migrate._steps": 2,
    "batch._sql": 2,
    "_adapters": 3,
    "_executor": 3,
    "session": 4,
    "session._database": 4,
    "session._replicas": 4,
    "_partitions": 5,
    "session._held": 4,
    "session._pipeline": 4,
    "_operations": 5,
    "_reads": 5,
    "_related": 5,
    "_from_sql": 5,
    "batch": 5,
    "batch._progress": 5,
    "batch._rows": 5,
    "batch._columnar": 5,
    "batch._batch": 5,
    "migrate": 5,
    "migrate._introspect": 5,
    "migrate._history": 5,
    "migrate._extensions": 5,
    "migrate._planner": 5,
    "migrate._apply": 5,
    "migrate._dryrun": 5,
    "migrate._snapshot": 5,
    "migrate._rollback": 5,
    "migrate._partitions": 5,
    "migrate._migrations": 5,
    "migrate._swap": 5,
    "migrate._offline": 5,
    "_nearest": 5,
    "_model": 5,
    "testing.arrays": 6,
    "testing.compare": 6,
    "testing.server": 6,
    "testing.standby": 6,
    "testing.tables": 6,
    "testing.strategies": 6,
    "testing.plugin": 6,
    "testing": 6,
    "__init__": 7,
    "__main__": 7,
    "demo": 7,
}

# Within one layer, the order a module may import in (no circles): a module may import only
# modules listed before it in its own layer.
ORDER: list[str] = list(LAYERS)


def module_name(path: Path) -> str:
    """Return the dotted name of *path* under ``orso_pg`` (``__init__`` names its package)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Return the orso_pg modules *path* imports at module level (lazy imports excepted)."""
    found: set[str] = set()
    body = ast.parse(path.read_text(encoding="utf-8")).body
    nodes = [n for n in body if isinstance(n, ast.ImportFrom | ast.Import)]
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("orso_pg.") for a in node.names if a.name.startswith("orso_pg.")
            )
            continue
        if not node.module or node.module.split(".")[0] != "orso_pg":
            continue
        base = node.module.removeprefix("orso_pg").removeprefix(".")
        for alias in node.names:
            full = f"{base}.{alias.name}" if base else alias.name
            found.add(full if full in LAYERS else base)
    found.discard("")
    return found


SOURCES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_layer():
    """A new module must be placed in the picture before it can be checked."""
    assert set(SOURCES) == set(LAYERS)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_imports_go_down(name: str):
    """No module imports, at load time, from a layer above its own, nor sideways in a circle."""
    imported = imported_modules(SOURCES[name])
    unknown = imported - set(LAYERS)
    assert not unknown, f"orso_pg.{name} imports modules the picture lacks: {sorted(unknown)}"
    above = {m for m in imported if LAYERS[m] > LAYERS[name]}
    assert not above, f"orso_pg.{name} imports from a higher layer: {sorted(above)}"
    sideways = {
        m
        for m in imported
        if LAYERS[m] == LAYERS[name] and ORDER.index(m) > ORDER.index(name) and m != name
    }
    # A package's __init__ may be imported by its own modules' siblings only if listed first.
    assert not sideways, (
        f"orso_pg.{name} imports a later module of its own layer: {sorted(sideways)}"
    )


def test_the_codec_stands_alone():
    """The codec is pure: it imports nothing from orso_pg but the errors."""
    assert imported_modules(SOURCES["codec"]) <= {"errors"}


def test_the_query_layer_does_not_run_queries():
    """A QueryBuilder describes a query; no module of the query package imports, even lazily,
    the layers that execute (the session runs what the builder describes)."""
    executing = ("orso_pg._reads", "orso_pg._operations", "orso_pg._executor", "orso_pg.session")
    for path in (PACKAGE / "query").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = node.module
                names = [mod] + [f"{mod}.{a.name}" for a in node.names]
                hits = [n for n in names if n.startswith(executing)]
                assert not hits, f"{path.name} imports {hits}"


def test_an_upward_import_is_caught(tmp_path: Path):
    """The check itself: a module at the bottom importing the executor is flagged."""
    fake = tmp_path / "fake.py"
    fake.write_text("from orso_pg._executor import Executor\nfrom orso_pg import _reads\n")
    assert imported_modules(fake) == {"_executor", "_reads"}
    assert LAYERS["_executor"] > LAYERS["_types"]
