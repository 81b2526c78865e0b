"""The distributions: the license in both, the test suite in the sdist, the metadata complete."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(  # noqa: S603 (our own interpreter and arguments)
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return out


def test_the_wheel_carries_the_license_and_the_typing_marker(dists: Path):
    (wheel,) = dists.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert "orso_pg/py.typed" in names
    assert "License-Expression: MIT" in metadata
    assert "Project-URL: Source," in metadata
    # The private layout ships whole: every subpackage is in the wheel.
    for sub in ("session", "query", "batch", "migrate", "testing"):
        assert f"orso_pg/{sub}/__init__.py" in names


def test_the_sdist_carries_the_test_suite(dists: Path):
    (sdist,) = dists.glob("*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert "LICENSE" in names
    assert "tests/conftest.py" in names
    assert "tests/unit/test_layers.py" in names
    assert "tests/unit/public_api.txt" in names
    assert any(n.startswith("tests/golden/codec/") for n in names)
