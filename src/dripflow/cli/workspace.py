"""`dripflow validate` and `dripflow apply`: the workspace file in and out of the database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dripflow.cli.options import DatabaseOption
from dripflow.cli.store import open_store
from dripflow.core.clock import SystemClock
from dripflow.core.validate import WorkspaceInvalid, load_workspace_file
from dripflow.engine.operator import apply_live
from dripflow.store.database import transaction
from dripflow.store.tables import Workspace
from dripflow.store.workspaces import apply_workspace

FileArgument = Annotated[Path, typer.Argument(help="A workspace YAML file (SPEC §2).")]


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_command)
    app.command("apply")(apply_command)


def validate_command(file: FileArgument) -> None:
    """Check a workspace file and report every problem as FILE:LINE: key: message (SPEC X4)."""
    try:
        workspace = load_workspace_file(file)
    except WorkspaceInvalid as exc:
        report_problems(exc)
        raise typer.Exit(1) from None
    typer.echo(
        f"{file}: ok — workspace {workspace.workspace.id!r}, {len(workspace.sequences)} sequences, "
        f"{len(workspace.automations)} automations, {len(workspace.broadcasts)} broadcasts"
    )


def apply_command(file: FileArgument, database: DatabaseOption = None) -> None:
    """Create or update a workspace from a file, in one transaction; unchanged files change nothing."""
    try:
        workspace = load_workspace_file(file)
    except WorkspaceInvalid as exc:
        report_problems(exc)
        typer.echo("nothing was applied", err=True)
        raise typer.Exit(1) from None
    engine = open_store(database)
    with transaction(engine) as session:
        if session.get(Workspace, workspace.workspace.id) is None:
            report = apply_workspace(session, workspace, now=SystemClock().now(), actor="cli")
        else:  # SPEC §10: live sequences change as by admin.sequence.update (S7, T9)
            report = apply_live(session, workspace, SystemClock(), "cli")
    for line in report.lines():
        typer.echo(line)


def report_problems(exc: WorkspaceInvalid) -> None:
    for problem in exc.problems:
        typer.echo(str(problem), err=True)
    count = len(exc.problems)
    typer.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
