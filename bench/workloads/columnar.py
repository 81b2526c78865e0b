"""COL: a query's result as columns (numpy arrays), against the columnar readers a user has.

Owns a table of ``rows`` x 5 columns (bigint, timestamptz, double, bigint, boolean), loaded once
with ``generate_series``, and the variants that read all of it into one array per column: the
ADBC PostgreSQL driver on its own (the raw baseline: the fastest columnar reader installable
here), ConnectorX, orso_pg's ``fetch_arrays``, and the paths a user takes without them: rows
from ``fetch()`` into ``pd.DataFrame``, ``pd.read_sql`` through SQLAlchemy, raw psycopg rows.
Expected sums come from the SQL that generated the rows. It must not format results.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from bench import memory
from bench.harness import NotApplicable, Target, Variant, Workload, expect
from orso_pg import Database, Orso, QueryBuilder, column, table

_TABLE = "col_bench"
_SELECT = f"SELECT id, ts, price, qty, live FROM {_TABLE}"  # noqa: S608 (a constant)


@table(_TABLE)
class ColRow(Orso):
    """The benchmark table's model."""

    id: int = column(primary_key=True)
    ts: dt.datetime
    price: float
    qty: int
    live: bool


class Columnar(Workload):
    """Read every row of a 5-column table into one numpy array per column."""

    key = "COL"
    title = "columnar read: N rows x 5 columns into numpy arrays"
    target = Target(0.8, "fetch_arrays >= 0.8x the fastest columnar reader (ADBC)")
    goal = "fetch_arrays >= 3x fetch()+DataFrame and >= 5x pd.read_sql"
    reps = 5

    def setup(self) -> None:
        self.n = 100_000 if self.quick else 1_000_000
        admin = self.env.admin
        name = sql.Identifier(_TABLE)
        admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        admin.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigint PRIMARY KEY, ts timestamptz, "
                "price double precision, qty bigint, live boolean)"
            ).format(name)
        )
        admin.execute(
            sql.SQL(
                "INSERT INTO {} SELECT g, timestamptz '2024-01-01' + g * interval '1 ms', "
                "g / 8.0, g %% 1000, g %% 3 = 0 FROM generate_series(1, %s) g"
            ).format(name),
            (self.n,),
        )
        admin.execute(sql.SQL("VACUUM ANALYZE {}").format(name))
        row = admin.execute(
            sql.SQL("SELECT sum(qty), count(*) FILTER (WHERE live) FROM {}").format(name)
        ).fetchone()
        assert row is not None
        self.qty_sum, self.live_count = int(row[0]), int(row[1])
        self.uri, self.no_uri = connectorx_uri(self.env.base_dsn)

    def units(self) -> int:
        return self.n

    def verify(self, variant: Variant, result: Any) -> None:
        del variant
        expect("rows", len(result["id"]), self.n)
        expect("sum(qty)", int(np.asarray(result["qty"]).sum()), self.qty_sum)
        expect("live rows", int(np.asarray(result["live"]).sum()), self.live_count)

    def figures(self, variant: Variant) -> dict[str, Any]:
        """Peak resident memory of fetch_arrays in a fresh process, against the arrays' bytes."""
        if variant.label != "orso_pg/fetch_arrays":
            return {}
        out = subprocess.run(
            [sys.executable, "-m", "bench.workloads.columnar", self.env.base_dsn, self.env.schema],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def teardown(self) -> None:
        super().teardown()
        self.env.admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(_TABLE)))

    def variants(self) -> list[Variant]:
        clients, env = self.clients, self.env
        qualified = f"{env.schema}.{_TABLE}"
        select = _SELECT.replace(_TABLE, qualified)

        def adbc() -> dict[str, Any]:
            from adbc_driver_postgresql import dbapi

            with dbapi.connect(env.dsn) as conn, conn.cursor() as cur:
                cur.execute(select)
                tbl = cur.fetch_arrow_table()
            return {name: tbl.column(name).to_numpy() for name in tbl.column_names}

        def connectorx() -> dict[str, Any]:
            if self.uri is None:
                raise NotApplicable(self.no_uri)
            try:
                import connectorx as cx
            except ImportError as exc:
                msg = f"connectorx is not installed ({exc})"
                raise NotApplicable(msg) from exc
            try:
                tbl = cx.read_sql(self.uri, select, return_type="arrow")
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # a Rust panic is a BaseException: report, never crash
                msg = f"connectorx failed: {type(exc).__name__}: {exc}"
                raise RuntimeError(msg) from exc
            return {name: tbl.column(name).to_numpy() for name in tbl.column_names}

        def orso_arrays() -> dict[str, Any]:
            return QueryBuilder(ColRow).fetch_arrays(clients.db)

        def orso_fetch_df() -> Any:
            import pandas as pd

            rows = QueryBuilder(ColRow).fetch(clients.db)
            return pd.DataFrame(rows, columns=["id", "ts", "price", "qty", "live"])

        def read_sql() -> Any:
            import pandas as pd

            with clients.engine.connect() as conn:
                return pd.read_sql(select, conn)

        def raw_rows() -> dict[str, Any]:
            conn = clients.raw
            rows = conn.cursor(binary=True).execute(select).fetchall()
            conn.commit()
            cols = list(zip(*rows, strict=True))
            return {
                "id": np.array(cols[0], dtype=np.int64),
                "ts": np.array(cols[1]),
                "price": np.array(cols[2], dtype=np.float64),
                "qty": np.array(cols[3], dtype=np.int64),
                "live": np.array(cols[4], dtype=bool),
            }

        return [
            Variant("raw", "adbc", adbc),
            Variant("raw", "connectorx", connectorx),
            Variant("raw", "psycopg rows to arrays", raw_rows, ref=True),
            Variant("orso_pg", "fetch_arrays", orso_arrays),
            Variant("orso_pg", "fetch() + pd.DataFrame", orso_fetch_df, ref=True),
            Variant("sqlalchemy_core", "pd.read_sql", read_sql, ref=True),
        ]


# Connection settings a ConnectorX URI can carry; any other setting (a service file, client
# certificates, several hosts...) makes the peer not applicable rather than silently different.
_URI_KEYS = frozenset({"host", "port", "user", "password", "dbname", "sslmode", "options"})


def connectorx_uri(dsn: str) -> tuple[str | None, str]:
    """Return ConnectorX's URI for *dsn*, or None and the reason it cannot express it.

    A unix-socket directory goes in as a percent-encoded host, which ConnectorX (rust-postgres)
    reads as a socket path; the user and password are percent-encoded too.
    """
    params = conninfo_to_dict(dsn)
    extra = sorted(set(params) - _URI_KEYS)
    if extra:
        return None, f"the DSN sets {', '.join(extra)}, which a ConnectorX URI cannot carry"
    host = str(params.get("host") or "localhost")
    if "," in host:
        return None, f"ConnectorX connects to one host; the DSN names several ({host})"
    if "dbname" not in params:
        return None, "the DSN names no database"
    where = quote(host, safe="") if host.startswith("/") else host
    user = quote(str(params.get("user", "postgres")), safe="")
    password = params.get("password")
    auth = f"{user}:{quote(str(password), safe='')}" if password else user
    port = params.get("port", "5432")
    query: dict[str, str] = {k: str(params[k]) for k in ("sslmode", "options") if k in params}
    tail = ("?" + urlencode(query, quote_via=quote)) if query else ""
    return f"postgresql://{auth}@{where}:{port}/{quote(str(params['dbname']), safe='')}{tail}", ""


def _peak_child(dsn: str, schema: str) -> None:
    """The memory probe's child: peak RSS growth while fetch_arrays reads the whole table."""
    with Database(dsn, schema=schema, max_size=1) as db:
        QueryBuilder(ColRow).select("id").limit(1).fetch_arrays(db)  # load the driver first
        before = memory._start_peak()
        arrays = QueryBuilder(ColRow).fetch_arrays(db)
        peak = memory._peak_rss()
        nbytes = sum(a.nbytes for a in arrays.values())
        print(
            json.dumps(
                {
                    "peak_growth_bytes": peak - before,
                    "array_bytes": nbytes,
                    "peak_over_arrays": round((peak - before) / nbytes, 2),
                }
            )
        )


if __name__ == "__main__":
    _peak_child(sys.argv[1], sys.argv[2])
