"""The public surface: what ``orso_pg`` and its documented modules export, and under what path."""

from __future__ import annotations

import importlib
import inspect
import pickle
from pathlib import Path

import pytest

import orso_pg

LISTED = Path(__file__).with_name("public_api.txt")
DOCUMENTED = ("orso_pg", "orso_pg.codec", "orso_pg.errors", "orso_pg.testing")


def committed() -> set[str]:
    lines = LISTED.read_text(encoding="utf-8").splitlines()
    return {line for line in lines if line and not line.startswith("#")}


def exported() -> set[str]:
    names: set[str] = set()
    for module_name in DOCUMENTED:
        module = importlib.import_module(module_name)
        names.update(f"{module_name}:{name}" for name in module.__all__)
    return names


def test_the_public_api_is_the_committed_list():
    """Adding or removing a public name is a decision: it changes the committed list too."""
    assert exported() == committed()


@pytest.mark.parametrize("module_name", DOCUMENTED)
def test_every_exported_name_exists(module_name: str):
    module = importlib.import_module(module_name)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing


@pytest.mark.parametrize("name", sorted(orso_pg.__all__))
def test_public_objects_report_their_public_path(name: str):
    """Tracebacks and reprs say ``orso_pg.Filter``, never a private module's path."""
    obj = getattr(orso_pg, name)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        # The errors live in a public module of their own, as psycopg.errors does.
        assert obj.__module__ in {"orso_pg", "orso_pg.errors"}, f"{name} reports {obj.__module__}"
        home = importlib.import_module(obj.__module__)
        assert getattr(home, obj.__qualname__) is obj


def test_a_public_value_pickles_by_its_public_path():
    sort = orso_pg.Sort.desc("price")
    assert pickle.loads(pickle.dumps(sort))  # noqa: S301 (our own bytes) == sort
    assert repr(orso_pg.Pagination(2, 10)).startswith("Pagination(")


def test_private_modules_are_private_in_name():
    """Every module under orso_pg is private (``_x``), inside a package, or documented."""
    package = Path(orso_pg.__file__).parent
    public = {"__init__", "__main__", "codec", "errors", "demo"}
    for path in package.glob("*.py"):
        assert path.stem in public or path.stem.startswith("_"), path.name
    for sub in ("session", "query", "batch", "migrate"):
        for path in (package / sub).glob("*.py"):
            assert path.stem == "__init__" or path.stem.startswith("_"), f"{sub}/{path.name}"
        # A subpackage exports nothing itself: orso_pg is the one import path.
        assert not getattr(importlib.import_module(f"orso_pg.{sub}"), "__all__", [])
