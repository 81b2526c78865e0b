"""Choosing a server, naming it, and the TLS rule: no server is needed for these."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from orso_pg import ConfigError, Database
from orso_pg.session._connect import NO_SERVER, choose, describe, secure


@pytest.fixture(autouse=True)
def _no_libpq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ORSO_PG_DSN", "ORSO_PG_DATA", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PGSSLMODE", raising=False)


def test_no_server_chosen_is_refused_and_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Database() with no DSN anywhere refuses, says how to choose, and starts nothing."""
    data = tmp_path / "would_be_data"
    monkeypatch.setenv("ORSO_PG_DATA", str(data))  # only `embedded` would use it
    with pytest.raises(ConfigError) as caught:
        Database()
    message = str(caught.value)
    assert message == NO_SERVER
    assert "ORSO_PG_DSN=embedded" in message
    assert "data_dir=" in message
    assert not data.exists()


def test_an_empty_environment_variable_is_no_choice(monkeypatch: pytest.MonkeyPatch):
    """ORSO_PG_DSN set to the empty string (a secret that came out blank) is refused too."""
    monkeypatch.setenv("ORSO_PG_DSN", "")
    with pytest.raises(ConfigError, match="no PostgreSQL server chosen"):
        Database()


def test_a_dsn_and_a_data_dir_contradict_each_other(tmp_path: Path):
    """Both a real DSN and data_dir: which one was meant is unknowable, so refuse."""
    with pytest.raises(ConfigError, match="either a DSN or data_dir"):
        Database("host=127.0.0.1 dbname=x", data_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_the_environment_wins_over_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Code written with data_dir= runs against the server a deployment names."""
    monkeypatch.setenv("ORSO_PG_DSN", "host=db.example.com dbname=prod")
    target = choose(None, tmp_path / "pgdata")
    assert target.dsn == "host=db.example.com dbname=prod"
    assert target.embedded is None
    assert not (tmp_path / "pgdata").exists()


def test_an_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ORSO_PG_DSN", "host=from-env")
    assert choose("host=from-argument", None).dsn == "host=from-argument"


# --- naming a server ------------------------------------------------------------------------


def test_describe_names_user_host_port_and_database_never_the_password():
    dsn = "postgresql://ana:s3cret@db.example.com:6432/sales?sslmode=verify-full"
    assert describe(dsn) == "ana@db.example.com:6432/sales"
    secret = "s3cret"  # noqa: S105 - the value that must not show
    assert secret not in describe(make_conninfo("host=h user=u", password=secret))


def test_describe_fills_gaps_from_libpq_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PGUSER", "etl")
    monkeypatch.setenv("PGHOST", "10.0.0.5")
    monkeypatch.setenv("PGPORT", "5433")
    assert describe("") == "etl@10.0.0.5:5433/etl"
    assert describe("dbname=x user=y") == "y@10.0.0.5:5433/x"


def test_describe_unix_sockets_ipv6_and_embedded(tmp_path: Path):
    assert describe("user=u dbname=d") == "u@(local socket):5432/d"
    assert describe("host=/var/run/postgresql user=u dbname=d") == "u@/var/run/postgresql:5432/d"
    assert describe("host=::1 port=5 user=u dbname=d") == "u@[::1]:5/d"
    assert describe("host=a,b port=1,2 user=u dbname=d") == "u@a,b:1,2/d"
    assert describe("host=/x", tmp_path) == f"embedded server in {tmp_path}"


@given(
    user=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
    password=st.text(min_size=1, max_size=30).filter(lambda p: "\x00" not in p),
)
def test_describe_never_shows_a_password(user: str, password: str):
    dsn = make_conninfo("host=db.internal dbname=app", user=user, password=password)
    named = describe(dsn)
    assert named == f"{user}@db.internal:5432/app"


# --- require_tls ----------------------------------------------------------------------------


def test_without_require_tls_the_dsn_is_untouched():
    assert secure("host=db sslmode=disable", require_tls=False) == "host=db sslmode=disable"


def test_require_tls_sets_verify_full_when_sslmode_is_missing():
    params = conninfo_to_dict(secure("host=db.example.com dbname=x", require_tls=True))
    assert params["sslmode"] == "verify-full"
    params = conninfo_to_dict(secure("hostaddr=10.1.2.3 dbname=x", require_tls=True))
    assert params["sslmode"] == "verify-full"


@pytest.mark.parametrize("mode", ["verify-full", "verify-ca"])
def test_require_tls_keeps_a_verifying_sslmode(mode: str):
    dsn = f"host=db.example.com sslmode={mode} sslrootcert=/etc/ssl/ca.pem"
    params = conninfo_to_dict(secure(dsn, require_tls=True))
    assert params["sslmode"] == mode
    assert params["sslrootcert"] == "/etc/ssl/ca.pem"


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require"])
def test_require_tls_refuses_weaker_modes_before_connecting(mode: str):
    """TEST-NET-1 never answers: the refusal comes before any connection is tried."""
    with pytest.raises(ConfigError, match=f"require_tls=True refuses sslmode={mode}") as caught:
        Database(f"host=192.0.2.1 user=u dbname=d sslmode={mode}", require_tls=True)
    assert "u@192.0.2.1:5432/d" in str(caught.value)
    assert caught.value.value == mode


def test_require_tls_reads_pgsslmode_as_libpq_does(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PGSSLMODE", "prefer")
    with pytest.raises(ConfigError, match="sslmode=prefer"):
        secure("host=db.example.com", require_tls=True)
    monkeypatch.setenv("PGSSLMODE", "verify-ca")
    assert conninfo_to_dict(secure("host=db.example.com", require_tls=True))["sslmode"] == (
        "verify-ca"
    )


def test_require_tls_leaves_unix_sockets_alone(monkeypatch: pytest.MonkeyPatch):
    """A Unix-domain socket never leaves the machine; libpq does no TLS over it."""
    for dsn in ("host=/var/run/postgresql dbname=x", "dbname=x", "host=@abstract dbname=x"):
        assert secure(dsn, require_tls=True) == dsn
    monkeypatch.setenv("PGHOST", "db.example.com")
    assert conninfo_to_dict(secure("dbname=x", require_tls=True))["sslmode"] == "verify-full"
