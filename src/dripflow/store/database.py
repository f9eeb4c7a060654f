"""Connecting to the database: SQLite for the embedded default, PostgreSQL for shared deployments (SPEC §10).

Everything else in :mod:`dripflow.store` takes an :class:`~sqlalchemy.engine.Engine` or a
:class:`~sqlalchemy.orm.Session` made here, so the per-database tuning lives in one place.

SQLite notes (why the connect/begin hooks below exist):

* WAL journal mode lets readers run while one writer commits, which the worker and the web UI
  sharing one file rely on; ``synchronous=NORMAL`` is the setting SQLite recommends with WAL
  (durable across application crashes, fast).
* Foreign keys are off by default in SQLite; the schema relies on them (cascades from contacts).
* ``busy_timeout`` makes a writer wait for the lock instead of failing with "database is locked".
* Python's ``sqlite3`` module, in its default "legacy" mode, does not BEGIN before SELECT or DDL,
  which breaks SAVEPOINTs and transactional migrations. We switch that off and emit
  ``BEGIN IMMEDIATE`` ourselves: every transaction takes the write lock up front, so a transaction
  that reads and then writes can never fail half-way with an unretryable ``SQLITE_BUSY`` (the
  same choice Rails and Django recommend for SQLite). Readers outside a transaction are not blocked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, Executable, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_DATABASE_URL = "sqlite:///./dripflow.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000

__all__ = [
    "DEFAULT_DATABASE_URL",
    "database_url",
    "dialect_insert",
    "is_postgresql",
    "is_sqlite",
    "make_engine",
    "normalize_url",
    "session_factory",
    "transaction",
]


def database_url() -> str:
    """The configured database: ``DRIPFLOW_DATABASE_URL``, else a SQLite file in the current directory."""
    return os.environ.get("DRIPFLOW_DATABASE_URL") or DEFAULT_DATABASE_URL


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; plain ``postgresql://`` / ``postgres://`` URLs are pointed at psycopg 3.

    SQLAlchemy would otherwise pick psycopg2, which is not installed; users copy URLs from their
    hosting provider, and those never name a driver.
    """
    if isinstance(url, str) and url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def is_sqlite(engine_or_url: Engine | URL | str) -> bool:
    return _backend(engine_or_url) == "sqlite"


def is_postgresql(engine_or_url: Engine | URL | str) -> bool:
    return _backend(engine_or_url) == "postgresql"


def _backend(engine_or_url: Engine | URL | str) -> str:
    if isinstance(engine_or_url, Engine):
        return engine_or_url.dialect.name
    return normalize_url(engine_or_url).get_backend_name()


def make_engine(url: str | URL | None = None, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` (default :func:`database_url`) with dripflow's connection settings.

    Extra keyword arguments go to :func:`sqlalchemy.create_engine` (``echo=True``, a ``poolclass`` …).
    """
    parsed = normalize_url(url if url is not None else database_url())
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, **kwargs)
    if backend == "sqlite":
        engine = create_engine(parsed, **kwargs)
        _configure_sqlite(engine)
        return engine
    raise ValueError(f"unsupported database {parsed.drivername!r}: use sqlite:/// or postgresql+psycopg://")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (see the module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # Pragmas run outside any transaction: foreign_keys is a no-op inside one.
            cursor.execute("PRAGMA journal_mode=WAL")  # answers "memory" for :memory:, which is fine
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # An engine/connection asked for AUTOCOMMIT gets none (SQLAlchemy's driver-level autocommit).
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``.

    ``expire_on_commit=False``: rows handed back to a caller (an API response, a CLI report) stay
    readable after the transaction that loaded them has committed.
    """
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A Session in one transaction: committed when the block ends, rolled back if it raises.

    The session is made directly, as :func:`session_factory`'s would be: building a
    ``sessionmaker`` (a new class) per transaction cost 0.15 ms, more than a short transaction."""
    with Session(bind=engine, expire_on_commit=False) as session, session.begin():
        yield session


_BUILT: dict[tuple[Callable[[Session], Executable], str], Executable] = {}


def built_once(session: Session, build: Callable[[Session], Executable]) -> Executable:
    """``build(session)``, made once per database dialect and reused: for hot statements that differ
    by dialect (``ON CONFLICT``), since composing one costs more than running it on SQLite."""
    key = (build, session.get_bind().dialect.name)
    statement = _BUILT.get(key)
    if statement is None:
        statement = _BUILT[key] = build(session)
    return statement


def dialect_insert(session: Session, entity: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT for ``entity`` with the ``on_conflict_do_*`` methods of the session's database.

    Both PostgreSQL and SQLite (3.24+) speak ``INSERT ... ON CONFLICT``; SQLAlchemy exposes it per
    dialect, and this picks the right one so repositories can write race-free upserts once.
    """
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(entity)
    if name == "sqlite":
        return sqlite.insert(entity)
    raise ValueError(f"unsupported database {name!r}")
