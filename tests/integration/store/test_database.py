"""Connections: configuration (SPEC §10), SQLite tuning, and transactions that behave on both databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from dripflow.store.database import (
    DEFAULT_DATABASE_URL,
    database_url,
    make_engine,
    normalize_url,
    session_factory,
    transaction,
)
from dripflow.store.migrate import upgrade
from dripflow.store.tables import Workspace

from .conftest import add_workspace


def test_database_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC §10: DRIPFLOW_DATABASE_URL, default sqlite:///./dripflow.db."""
    monkeypatch.delenv("DRIPFLOW_DATABASE_URL", raising=False)
    assert database_url() == DEFAULT_DATABASE_URL == "sqlite:///./dripflow.db"
    monkeypatch.setenv("DRIPFLOW_DATABASE_URL", "postgresql+psycopg://u@db/x")
    assert database_url() == "postgresql+psycopg://u@db/x"


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://u:p%40ss@db:5433/x",
        "postgres://u:p%40ss@db:5433/x",
        "postgresql+psycopg://u:p%40ss@db:5433/x",
    ],
)
def test_plain_postgresql_urls_use_psycopg(given: str) -> None:
    """SPEC §10: PostgreSQL as postgresql+psycopg://; the driverless form people copy works too."""
    url = normalize_url(given)
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.password, url.host, url.port, url.database) == ("u", "p@ss", "db", 5433, "x")
    engine = make_engine(given)
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_unsupported_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        make_engine("mysql://u@db/x")


def test_sqlite_file_databases_use_wal_and_enforce_foreign_keys(tmp_path: Path) -> None:
    """WAL lets the web UI read while the worker writes; the schema relies on foreign keys."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        pragmas = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        }
    engine.dispose()
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000, "synchronous": 1}


def test_migrated_sqlite_database_stays_in_wal_mode(tmp_path: Path) -> None:
    """The journal mode is a property of the file: it survives the migration and reconnecting."""
    url = f"sqlite:///{tmp_path / 'dripflow.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
        assert (tmp_path / "dripflow.db-wal").exists()
    engine.dispose()
    raw = sqlite3.connect(tmp_path / "dripflow.db")  # a plain connection, without make_engine's pragmas
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.close()


def _workspace_count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Workspace)) or 0


def test_transaction_commits_or_rolls_back_as_a_whole(engine: Engine) -> None:
    with transaction(engine) as session:
        add_workspace(session, "acme")
    assert _workspace_count(engine) == 1

    with pytest.raises(RuntimeError), transaction(engine) as session:
        add_workspace(session, "globex")
        raise RuntimeError("boom")
    assert _workspace_count(engine) == 1


def test_savepoints_roll_back_only_their_part(engine: Engine) -> None:
    """SQLite's driver breaks SAVEPOINT in its default mode; make_engine takes BEGIN over."""
    with transaction(engine) as session:
        add_workspace(session, "acme")
        nested = session.begin_nested()
        add_workspace(session, "globex")
        nested.rollback()
    with Session(engine) as session:
        assert list(session.scalars(select(Workspace.id))) == ["acme"]


def test_ddl_is_transactional(engine: Engine) -> None:
    """A migration that fails half-way must leave nothing behind, on SQLite too."""
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE scratch (x INTEGER)"))
        conn.rollback()
    with engine.connect() as conn:
        tables = {
            "sqlite": "SELECT count(*) FROM sqlite_master WHERE name = 'scratch'",
            "postgresql": "SELECT count(*) FROM pg_tables WHERE tablename = 'scratch'",
        }[engine.dialect.name]
        assert conn.execute(text(tables)).scalar() == 0


def test_sessions_keep_loaded_rows_readable_after_commit(engine: Engine) -> None:
    with session_factory(engine)() as session:
        workspace = add_workspace(session, "acme")
        session.commit()
    assert workspace.name == "Acme"
