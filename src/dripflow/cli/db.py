"""`dripflow db ...`: schema management."""

from __future__ import annotations

import typer
from alembic.util import CommandError
from sqlalchemy.exc import OperationalError

from dripflow.cli.options import DatabaseOption
from dripflow.cli.store import cannot_open, checked_engine
from dripflow.core.errors import UserError
from dripflow.store.database import database_url
from dripflow.store.migrate import current_revision, upgrade

app = typer.Typer(help="Create or migrate the database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command(database: DatabaseOption = None) -> None:
    """Create the schema, or migrate it to the latest version."""
    url = database or database_url()
    checked_engine(url).dispose()
    try:
        upgrade(url)
    except OperationalError as exc:
        raise cannot_open(url, exc) from None
    except CommandError as exc:  # such as a revision from a newer dripflow
        raise UserError(f"cannot migrate the database: {exc}") from None
    typer.echo(f"database at revision {current_revision(url)}")
