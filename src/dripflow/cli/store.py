"""Opening the database for a command, with errors a person can act on."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import ArgumentError, OperationalError

from dripflow.core.errors import UserError
from dripflow.store.database import database_url, make_engine, transaction
from dripflow.store.migrate import alembic_config, current_revision, head_revision, upgrade
from dripflow.store.tables import Workspace


def open_store(url: str | None) -> Engine:
    """Open the database at the current schema; an empty database is created on first use."""
    url = url or database_url()
    engine = checked_engine(url)
    try:
        empty = not inspect(engine).get_table_names()
    except OperationalError as exc:
        raise cannot_open(url, exc) from None
    if empty:
        upgrade(url)
        return engine
    revision = current_revision(url)
    if revision != head_revision():
        if revision is not None and revision not in _known_revisions():
            raise UserError(
                f"the database {_safe(url)} is at schema revision {revision!r}, which this version of "
                "dripflow does not know: it was migrated by a newer dripflow"
            )
        raise UserError(f"the database {_safe(url)} has an older schema; run `dripflow db upgrade` first")
    return engine


def checked_engine(url: str) -> Engine:
    """An engine for ``url``, or a UserError when the URL names no database dripflow can use."""
    try:
        return make_engine(url)
    except (ArgumentError, ValueError) as exc:  # unparseable, or neither SQLite nor PostgreSQL
        raise UserError(
            f"cannot use the database URL given (--database / DRIPFLOW_DATABASE_URL): {exc}"
        ) from None


def cannot_open(url: str, exc: OperationalError) -> UserError:
    return UserError(f"cannot open the database {_safe(url)}: {' '.join(str(exc.orig).split())}")


def _known_revisions() -> set[str]:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return {script.revision for script in scripts.walk_revisions()}


def resolve_workspace(engine: Engine, given: str | None) -> str:
    """The workspace a command acts on: the one named, or the only one there is."""
    with transaction(engine) as session:
        ids = list(session.scalars(select(Workspace.id).order_by(Workspace.id)))
    if given is not None:
        if given not in ids:
            known = ", ".join(ids) or "none yet"
            raise UserError(f"no workspace {given!r} in this database (workspaces: {known})")
        return given
    if not ids:
        raise UserError("this database has no workspace yet; run `dripflow apply WORKSPACE.yaml` first")
    if len(ids) > 1:
        raise UserError(f"this database has several workspaces ({', '.join(ids)}); pass --workspace ID")
    return ids[0]


def _safe(url: str) -> str:
    """The URL without its password, fit to print."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
