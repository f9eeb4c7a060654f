"""`dripflow db upgrade`: migrations are a deliberate act, and an old database says so in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from dripflow.store.database import make_engine
from dripflow.store.migrate import alembic_config, current_revision, head_revision, upgrade
from tests.acceptance.conftest import Dripflow, assert_no_traceback, store


def make_older_schema(url: str) -> None:
    """A database one migration behind this dripflow.

    While there is only one migration, "behind" is a database with tables but no schema revision
    (made before the first migration): `db upgrade` must bring that up to date just the same.
    """
    scripts = ScriptDirectory.from_config(alembic_config(url))
    head = scripts.get_revision(head_revision())
    assert head is not None
    previous = head.down_revision
    if isinstance(previous, str):
        upgrade(url, previous)
        return
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY)"))
    finally:
        engine.dispose()


def test_upgrade_a_fresh_database_then_use_it(dripflow: Dripflow, empty_db_url: str, demo_file: Path) -> None:
    # SPEC §10: `dripflow db upgrade` creates the schema; then every command works on it
    created = dripflow("db", "upgrade", "--database", empty_db_url)
    assert created.code == 0, created.output
    assert created.lines("out") == [f"database at revision {head_revision()}"]

    applied = dripflow("apply", demo_file, "--database", empty_db_url)
    assert applied.code == 0, applied.output
    assert applied.lines("out")[0] == "workspace 'acme': created"
    exported = dripflow("contacts", "export", "--database", empty_db_url)
    assert exported.code == 0, exported.output
    assert exported.out.startswith("id,email,phone,first_name,last_name,")

    # running it again changes nothing and keeps the data
    again = dripflow("db", "upgrade", "--database", empty_db_url)
    assert again.code == 0, again.output
    assert again.lines("out") == [f"database at revision {head_revision()}"]
    assert dripflow("apply", demo_file, "--database", empty_db_url).lines("out") == [
        "workspace 'acme': unchanged"
    ]


def test_a_database_that_needs_an_upgrade_is_refused_in_one_line(
    dripflow: Dripflow, empty_db_url: str, demo_file: Path
) -> None:
    # docs/decisions.md (SPEC §10): "a database at an older schema is refused with 'run `dripflow
    # db upgrade`', so a migration is always a deliberate act"
    make_older_schema(empty_db_url)
    before = current_revision(empty_db_url)
    assert before != head_revision()

    for command in (("apply", demo_file), ("contacts", "export"), ("contacts", "import", demo_file)):
        refused = dripflow(*command, "--database", empty_db_url)
        assert refused.code == 1, refused.output
        assert_no_traceback(refused)
        assert refused.out == ""
        [message] = refused.lines("err")
        assert message.startswith("error: the database ")
        assert message.endswith(" has an older schema; run `dripflow db upgrade` first")
    assert current_revision(empty_db_url) == before  # refused, not silently migrated

    upgraded = dripflow("db", "upgrade", "--database", empty_db_url)
    assert upgraded.code == 0, upgraded.output
    assert current_revision(empty_db_url) == head_revision()
    applied = dripflow("apply", demo_file, "--database", empty_db_url)
    assert applied.code == 0, applied.output
    assert applied.lines("out")[0] == "workspace 'acme': created"


def test_an_empty_database_is_created_on_first_use(
    dripflow: Dripflow, tmp_path: Path, demo_file: Path
) -> None:
    # docs/decisions.md: "An empty database is created on first use by any command that needs it"
    url = f"sqlite:///{tmp_path / 'first-use.db'}"

    result = dripflow("apply", demo_file, "--database", url)

    assert result.code == 0, result.output
    assert current_revision(url) == head_revision()


@pytest.mark.parametrize("command", [("db", "upgrade"), ("contacts", "export")])
def test_a_database_from_a_newer_dripflow_is_named_as_such(
    dripflow: Dripflow, db_url: str, command: tuple[str, ...]
) -> None:
    # docs/decisions.md: the message must be one a person can act on — telling them to run
    # `db upgrade` on a database this dripflow cannot migrate would send them in a circle
    with store(db_url) as session:
        session.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))

    result = dripflow(*command, "--database", db_url)

    assert result.code == 1, result.output
    assert_no_traceback(result)
    [message] = result.lines("err")
    assert "9999_future" in message
    assert "db upgrade` first" not in message
