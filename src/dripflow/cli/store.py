"""Opening the database for a command, with errors a person can act on."""

from __future__ import annotations

from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import OperationalError

from dripflow.core.errors import UserError
from dripflow.store.database import database_url, make_engine, transaction
from dripflow.store.migrate import current_revision, head_revision, upgrade
from dripflow.store.tables import Workspace


def open_store(url: str | None) -> Engine:
    """Open the database at the current schema; an empty database is created on first use."""
    url = url or database_url()
    engine = make_engine(url)
    try:
        empty = not inspect(engine).get_table_names()
    except OperationalError as exc:
        raise UserError(f"cannot open the database {_safe(url)}: {exc.orig}") from None
    if empty:
        upgrade(url)
    elif current_revision(url) != head_revision():
        raise UserError(f"the database {_safe(url)} has an older schema; run `dripflow db upgrade` first")
    return engine


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
