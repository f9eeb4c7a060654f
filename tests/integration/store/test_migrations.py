"""Migrations: `dripflow db upgrade` (SPEC §10) creates the schema the models describe, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, inspect, select
from sqlalchemy.exc import IntegrityError

from dripflow.store.database import make_engine, transaction
from dripflow.store.migrate import alembic_config, current_revision, head_revision, upgrade
from dripflow.store.tables import Base, Contact, Workspace

from .conftest import add_workspace

TABLES = {
    "workspaces",
    "contacts",
    "contact_lists",
    "contact_tags",
    "facts",
    "events",
    "audit_log",
    "sequences",
    "sequence_versions",
    "enrollments",
    "step_runs",
    "messages",
    "tasks",
    "fulfillments",
    "journal",
    "webhook_deliveries",
    "broadcast_runs",
    "api_keys",
    "suppressions",
    "api_broadcasts",
}


def _schema_diffs(url: str, metadata: MetaData = Base.metadata) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_creates_the_schema_from_nothing(empty_db_url: str) -> None:
    assert current_revision(empty_db_url) is None
    assert _tables(empty_db_url) == set()
    upgrade(empty_db_url)
    assert current_revision(empty_db_url) == head_revision() == "0009"
    assert _tables(empty_db_url) == TABLES


def test_upgrade_is_idempotent_and_keeps_data(empty_db_url: str) -> None:
    upgrade(empty_db_url)
    engine = make_engine(empty_db_url)
    with transaction(engine) as session:
        add_workspace(session, "acme")
    upgrade(empty_db_url)
    assert current_revision(empty_db_url) == head_revision()
    with transaction(engine) as session:
        assert list(session.scalars(select(Workspace.id))) == ["acme"]
    engine.dispose()


def test_migrated_schema_equals_the_models(empty_db_url: str) -> None:
    """The hand-written migration and tables.py describe the same schema (types, keys, indexes)."""
    upgrade(empty_db_url)
    assert _schema_diffs(empty_db_url) == []


def test_schema_comparison_notices_differences(empty_db_url: str) -> None:
    """Guards the test above: a model the migration lacks is reported."""
    upgrade(empty_db_url)
    metadata = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(metadata)
    Table("not_migrated", metadata, Column("id", Integer, primary_key=True))
    assert [diff[0] for diff in _schema_diffs(empty_db_url, metadata)] == ["add_table"]  # type: ignore[index]


def test_downgrade_to_nothing_and_back(empty_db_url: str) -> None:
    """Alembic's own commands work with the packaged environment and no alembic.ini."""
    upgrade(empty_db_url)
    command.downgrade(alembic_config(empty_db_url), "base")
    assert current_revision(empty_db_url) is None
    assert _tables(empty_db_url) == set()
    command.upgrade(alembic_config(empty_db_url), "head")
    assert current_revision(empty_db_url) == head_revision()


def test_foreign_keys_are_enforced_after_migrating(empty_db_url: str) -> None:
    """env.py switches SQLite's foreign keys off while migrating; they must hold afterwards."""
    upgrade(empty_db_url)
    engine = make_engine(empty_db_url)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(IntegrityError), transaction(engine) as session:
        session.add(Contact(workspace_id="nowhere", fields={}, created_at=now, updated_at=now))
    engine.dispose()
