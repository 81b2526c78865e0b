"""The README's quickstart runs as written, against each test server."""

from __future__ import annotations

import re
import sys
import types

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.conftest import Server
from tests.readme_run import README, python_block, run_section

__all__ = ["README", "python_block"]  # for the tests that run other README blocks


def test_quickstart_runs(server: Server, schema: str, monkeypatch: pytest.MonkeyPatch):
    """The quickstart block runs unchanged and its own asserts hold."""
    ns = run_section("Quickstart", server, schema, monkeypatch)
    assert ns["latest"].price == 97_200.0
    assert ns["latest"].created_at == ns["trade"].created_at


def test_composite_keys_section_runs(server: Server, schema: str, monkeypatch: pytest.MonkeyPatch):
    """The composite primary key example runs unchanged and its own asserts hold."""
    ns = run_section("Composite primary keys", server, schema, monkeypatch)
    assert ns["bar"].close == 181.0  # read before the upsert changed the row
    assert ns["page"].next_cursor is not None


def test_partitioned_tables_section_runs(
    server: Server, schema: str, monkeypatch: pytest.MonkeyPatch
):
    """The partitioned tables example runs unchanged and its own asserts hold."""
    ns = run_section("Partitioned tables", server, schema, monkeypatch)
    assert ns["dropped"][-1] == "market_trades_p20240310"


def test_codec_outside_orso_pg_runs(server: Server, schema: str):
    """The codec block runs, and its psycopg reader reads what orso_pg wrote."""
    namespace: dict[str, object] = {}
    block = python_block("Reading compressed columns outside orso_pg")
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    dsn = make_conninfo(server.dsn, options=f"-c search_path={schema}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE series (id bigint PRIMARY KEY, closes bytea)")
        frames = namespace["frames"]
        assert isinstance(frames, list)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO series VALUES (%s, %s)", [(i, f) for i, f in enumerate(frames)]
            )
    read = namespace["read_closes"]
    assert callable(read)
    closes = read(dsn)
    walks = namespace["walks"]
    assert isinstance(walks, list)
    assert sorted(closes) == list(range(100))
    assert all(closes[i].tobytes() == walks[i].tobytes() for i in range(100))


def test_enum_columns_block_runs(server: Server, schema: str, monkeypatch: pytest.MonkeyPatch):
    """The enum block runs unchanged: the CHECK refuses a stranger's value, a rerun matches."""
    assert run_section("Enum columns", server, schema, monkeypatch)["refused"] is True


def runnable_blocks() -> list[tuple[str, str]]:
    """Return (heading, code) of every README python block that is a whole program.

    A whole program starts with its imports; fragments (which continue an example above
    them) and the pytest file of "Testing your models" (run by its own test) do not.
    """
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in re.compile(r"```python\n(.*?)```", re.DOTALL).finditer(text):
        code = match.group(1)
        if not code.startswith(("import ", "from ")):
            continue
        if 'Database("embedded")' in code or "sslrootcert" in code:
            # Choosing the embedded server and TLS need servers of their own; their tests run
            # these blocks (tests/integration/test_connect.py, test_tls.py).
            continue
        heading = re.findall(r"^## (.+)$", text[: match.start()], re.MULTILINE)[-1]
        blocks.append((heading, code))
    return blocks


def test_rows_moving_between_partitions_section_runs(
    server: Server, schema: str, monkeypatch: pytest.MonkeyPatch
):
    """The example of updates moving rows between partitions runs and its asserts hold."""
    ns = run_section("Rows that move between partitions", server, schema, monkeypatch)
    days = ("20240301", "20240305", "20240306")
    assert ns["gone"] == [f"moving_ticks_p{d}" for d in days]


def test_readme_examples_run_in_order_twice(
    server: Server, schema: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """Every runnable README example runs, in order and then all again, on one database."""
    dsn = make_conninfo(server.dsn, options=f"-c search_path={schema}")
    monkeypatch.setenv("ORSO_PG_DSN", dsn)
    blocks = runnable_blocks()
    headings = [heading for heading, _ in blocks]
    assert headings[0] == "Quickstart"
    assert "Queries" in headings
    assert "Migrations" in headings
    assert "Connections in production" in headings
    with psycopg.connect(server.dsn) as conn:
        has_vector = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
    if not has_vector:
        # The vector example needs pgvector on the server; test_vector.py runs it where it is.
        blocks = [(h, c) for h, c in blocks if h != "Vectors (pgvector)"]
    for run in (1, 2):
        for n, (heading, code) in enumerate(blocks):
            module = types.ModuleType(f"readme_{run}_{n}")
            monkeypatch.setitem(sys.modules, module.__name__, module)
            try:
                exec(compile(code, f"README.md ({heading})", "exec"), module.__dict__)  # noqa: S102
            except Exception as exc:  # noqa: BLE001 - reported with the run and heading
                pytest.fail(f"run {run}: the example under {heading!r} failed: {exc!r}")
    capsys.readouterr()


def test_values_section_runs(server: Server, schema: str, monkeypatch: pytest.MonkeyPatch):
    """The missing-value, dtype and precision example runs unchanged and its asserts hold."""
    pytest.importorskip("pandas")
    ns = run_section("Values: missing data, dtypes and precision", server, schema, monkeypatch)
    assert ns["sol"].fee == ns["Decimal"]("0.0001")
    assert [column for column, _ in ns["refused"]] == ["notional", "filled"]


def test_analytics_section_runs(server: Server, schema: str, monkeypatch: pytest.MonkeyPatch):
    """The analytics block runs unchanged, its asserts hold, and twice in a row."""
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    for _ in range(2):
        ns = run_section("Analytics reads", server, schema, monkeypatch)
        assert len(ns["df"]) == 1_000
        assert ns["table_"].num_rows == 199  # price > 3200: i > 800


def test_candles_section_runs(server: Server, schema: str, monkeypatch: pytest.MonkeyPatch):
    """The candles block runs twice and its figures match a pandas computation of its rows."""
    pd = pytest.importorskip("pandas")
    for _ in range(2):
        ns = run_section("Candles and rolling statistics", server, schema, monkeypatch)
    rolling = ns["rolling"]
    want = pd.Series(rolling["price"]).rolling(5, min_periods=1).mean().to_numpy()
    assert (abs(rolling["ma5"] - want) < 1e-9).all()
    assert ns["candles"]["open"].iloc[0] == 40_000
