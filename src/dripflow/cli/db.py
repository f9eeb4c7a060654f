"""`dripflow db ...`: schema management."""

from __future__ import annotations

import typer

from dripflow.cli.options import DatabaseOption
from dripflow.store.database import database_url
from dripflow.store.migrate import current_revision, upgrade

app = typer.Typer(help="Create or migrate the database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command(database: DatabaseOption = None) -> None:
    """Create the schema, or migrate it to the latest version."""
    url = database or database_url()
    upgrade(url)
    typer.echo(f"database at revision {current_revision(url)}")
