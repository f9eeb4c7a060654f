"""`dripflow keys create --role admin|write|read` (SPEC §10)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from dripflow.cli.options import DatabaseOption, WorkspaceOption
from dripflow.cli.store import open_store, resolve_workspace
from dripflow.core.errors import UserError
from dripflow.store.apikeys import ROLES, create_key
from dripflow.store.database import transaction

app = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)


@app.command("create")
def create_command(
    role: Annotated[str, typer.Option("--role", help="admin, write or read.")],
    label: Annotated[str | None, typer.Option("--label", help="What the key is for.")] = None,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Print a new API key for the workspace. Only its hash is stored: keep the key now."""
    if role not in ROLES:
        raise UserError(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    engine = open_store(database)
    workspace_id = resolve_workspace(engine, workspace)
    with transaction(engine) as session:
        key = create_key(session, workspace_id, role, datetime.now(UTC), label)
    engine.dispose()
    typer.echo(key)
