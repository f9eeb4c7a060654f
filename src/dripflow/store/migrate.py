"""Schema migrations without an ``alembic.ini``: ``dripflow db upgrade`` calls :func:`upgrade` (SPEC §10).

The Alembic environment ships inside the package (``dripflow/store/migrations``), so an installed
dripflow can migrate any database it is pointed at, from any working directory.

For development, :func:`alembic_config` gives a Config for Alembic's own commands, e.g.
``alembic.command.revision(alembic_config(url), message="...", autogenerate=True)``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from dripflow.store.database import database_url, make_engine, normalize_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

__all__ = ["MIGRATIONS_DIR", "alembic_config", "current_revision", "head_revision", "upgrade"]


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config for dripflow's migrations against ``url`` (default :func:`database_url`)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    rendered = normalize_url(url or database_url()).render_as_string(hide_password=False)
    # Config values go through ConfigParser interpolation, where "%" is special (URL-encoded passwords).
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Create the schema or migrate it to ``revision``; a database already there is left untouched."""
    url = url or database_url()
    config = alembic_config(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def current_revision(url: str | None = None) -> str | None:
    """The revision the database is at, or None when it has never been migrated."""
    engine = make_engine(url or database_url())
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest revision this version of dripflow knows."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head
