"""Shared fixtures: a fresh, migrated database per test, on SQLite and on a throw-away PostgreSQL.

``db_url`` is parametrised ``sqlite`` / ``postgres`` (select with ``-k sqlite``, or ``-m "not
postgres"``). The PostgreSQL server is started lazily, once per pytest process (so once per xdist
worker), from the Debian ``postgresql`` package's binaries; it is never skipped: a missing server
fails the run, because "passes on SQLite" is not what we ship to PostgreSQL users.

To keep per-test databases cheap, the schema is migrated once per process into a template
(a SQLite file / a PostgreSQL template database) and each test gets a copy.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from dripflow.store.database import make_engine, session_factory
from dripflow.store.migrate import upgrade

PG_USER = "postgres"
_INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found. The store tests run on PostgreSQL as "
    "well as SQLite; install them with `apt-get install postgresql` (Debian/Ubuntu)."
)


# -- a throw-away PostgreSQL server ------------------------------------------------------------------


@dataclass(frozen=True)
class PgServer:
    """A running server: connect as the ``postgres`` superuser over TCP on loopback, no password."""

    host: str
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_USER}@{self.host}:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to the maintenance database (for CREATE/DROP DATABASE)."""
        return psycopg.connect(
            host=self.host, port=self.port, user=PG_USER, dbname="postgres", autocommit=True
        )


def _find_pg_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<ver>/bin (Debian), else wherever initdb is on PATH."""

    def version(path: str) -> tuple[int, ...]:
        match = re.search(r"/postgresql/([\d.]+)/bin", path)
        return tuple(int(part) for part in match.group(1).split(".")) if match else ()

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve()))
    for initdb in candidates:
        bindir = Path(initdb).parent
        if (bindir / "pg_ctl").is_file():
            return bindir
    return None


def free_port() -> int:
    """A loopback port nobody listens on now (for servers the tests start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_server_user() -> None:
    """The Debian package creates the ``postgres`` user; a bare container may not have it."""
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_USER,
            ],
            check=True,
        )


def _as_server_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: when we are root, run its tools as the postgres user."""
    if os.geteuid() != 0:
        return argv
    if shutil.which("runuser"):
        return ["runuser", "-u", PG_USER, "--", *argv]
    return ["su", PG_USER, "-s", "/bin/sh", "-c", " ".join(_shell_quote(arg) for arg in argv)]


def _shell_quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(_as_server_user(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def _wait_until_ready(server: PgServer, deadline: float) -> None:
    while True:
        try:
            with server.admin() as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """Start a private PostgreSQL for this pytest process; stop it and delete its files afterwards."""
    bindir = _find_pg_bindir()
    if bindir is None:
        pytest.fail(_INSTALL_HINT, pytrace=False)
    base = Path(tempfile.mkdtemp(prefix="dripflow-pg-"))
    data, sockets, log = base / "data", base / "sockets", base / "server.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        _ensure_server_user()
        for path in (base, sockets):
            shutil.chown(path, PG_USER, PG_USER)
    try:
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        server: PgServer | None = None
        for _attempt in range(5):  # another process may grab the port between probing and binding
            port = free_port()
            options = (
                f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                _run(
                    [
                        str(bindir / "pg_ctl"),
                        "-D",
                        str(data),
                        "-l",
                        str(log),
                        "-w",
                        "-t",
                        "60",
                        "-o",
                        options,
                        "start",
                    ],
                    "pg_ctl start",
                )
            except RuntimeError:
                continue
            server = PgServer("127.0.0.1", port)
            break
        if server is None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"could not start PostgreSQL from {bindir}:\n{tail}")
        _wait_until_ready(server, time.monotonic() + 30)
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                _run(
                    [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], "pg_ctl stop"
                )
        shutil.rmtree(base, ignore_errors=True)


# -- fresh databases per test ------------------------------------------------------------------------

_database_numbers = itertools.count(1)
_PG_TEMPLATE = "dripflow_template"


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; tests get copies."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def _pg_template(pg_server: PgServer) -> str:
    """A PostgreSQL database migrated to head once; tests get ``CREATE DATABASE ... TEMPLATE`` copies."""
    with pg_server.admin() as conn:
        conn.execute(f"CREATE DATABASE {_PG_TEMPLATE}")
    upgrade(pg_server.url(_PG_TEMPLATE))  # disposes its engine: a template must have no sessions
    return _PG_TEMPLATE


def _new_pg_database(server: PgServer, template: str) -> Iterator[str]:
    name = f"test_{next(_database_numbers)}"
    with server.admin() as conn:
        # A backend that served the template may take a moment to exit after its client left.
        for attempt in itertools.count():
            try:
                conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
                break
            except psycopg.errors.ObjectInUse:
                if attempt >= 50:
                    raise
                time.sleep(0.1)
    yield server.url(name)
    with server.admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgres"``: the database a parametrised test runs on."""
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh database, already migrated to head, on each backend in turn."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "dripflow.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        yield from _new_pg_database(server, request.getfixturevalue("_pg_template"))


@pytest.fixture
def empty_db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh database with no schema at all (for migration tests), on each backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        yield from _new_pg_database(server, "template0")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A Session on the test's database; whatever the test did not commit is rolled back."""
    with session_factory(engine)() as session:
        yield session


def pytest_report_header(config: pytest.Config) -> str:
    bindir = _find_pg_bindir()
    return f"dripflow: PostgreSQL binaries {'at ' + str(bindir) if bindir else 'NOT FOUND'}"
