"""The layering the README draws: a module imports only from its own layer or those below."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "orso_pg"

# From the bottom up; the README's Architecture section draws the same picture.
LAYERS: dict[str, int] = {
    "errors": 0,
    "_embedded": 1,
    "_memo": 1,
    "codec": 1,
    "types": 1,
    "schema": 1,
    "compiler": 2,
    "ddl": 2,
    "filters": 2,
    "pagination": 2,
    "query": 2,
    "batch_sql": 2,
    "steps": 2,
    "executor": 3,
    "database": 4,
    "operations": 5,
    "reads": 5,
    "batch": 5,
    "batch_rows": 5,
    "progress": 5,
    "introspect": 5,
    "history": 5,
    "planner": 5,
    "apply": 5,
    "migrations": 5,
    "model": 5,
    "__init__": 6,
    "__main__": 6,
    "demo": 6,
}


def imported_modules(path: Path) -> set[str]:
    """Return the orso_pg modules *path* imports at module level (lazy imports excepted)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        parts = node.module.split(".")
        if parts[0] != "orso_pg":
            continue
        if len(parts) > 1:
            found.add(parts[1])
        else:
            found.update(alias.name for alias in node.names if alias.name in LAYERS)
    return found


def test_every_module_has_a_layer():
    """A new module must be placed in the picture before it can be checked."""
    assert {p.stem for p in PACKAGE.glob("*.py")} == set(LAYERS)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_imports_go_down(name: str):
    """No module imports, at load time, from a layer above its own."""
    above = {m for m in imported_modules(PACKAGE / f"{name}.py") if LAYERS.get(m, 0) > LAYERS[name]}
    assert not above, f"orso_pg.{name} imports from a higher layer: {sorted(above)}"


def test_the_codec_stands_alone():
    """The codec is pure: it imports nothing from orso_pg but the errors."""
    assert imported_modules(PACKAGE / "codec.py") <= {"errors"}
