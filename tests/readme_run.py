"""Running a README section's python block against a test server, as a reader would."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import make_conninfo

from tests.conftest import Server

README = Path(__file__).resolve().parent.parent / "README.md"


def python_block(section: str) -> str:
    """Return the first ```python block under the README heading *section*."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}\n")
    match = re.compile(r"```python\n(.*?)```", re.DOTALL).search(text, start)
    assert match is not None, f"no python block under {section!r}"
    return match.group(1)


def run_section(
    section: str, server: Server, schema: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Run the first python block under *section* in this test's schema; return its globals.

    The blocks open ``Database()`` with no argument, so ``ORSO_PG_DSN`` points at the schema.
    """
    monkeypatch.setenv("ORSO_PG_DSN", make_conninfo(server.dsn, options=f"-c search_path={schema}"))
    name = "readme_" + section.lower().replace(" ", "_")
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(python_block(section), "README.md", "exec"), module.__dict__)  # noqa: S102
    return module.__dict__
