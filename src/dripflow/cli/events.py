"""`dripflow events ingest FILE.jsonl` (SPEC §10): X2 events applied to a database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from dripflow.cli.options import DatabaseOption, WorkspaceOption
from dripflow.cli.store import open_store, resolve_workspace
from dripflow.engine.eventfile import read_events
from dripflow.engine.ingest_file import ingest_events

app = typer.Typer(help="Apply events (X2) to the database.", no_args_is_help=True)


@app.command("ingest")
def ingest_command(
    file: Annotated[Path, typer.Argument(help="Events, one JSON object a line (SPEC X2).")],
    database: DatabaseOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Apply every event of FILE, all or none; `at` is optional and defaults to now.

    Events with an `id` are applied at most once, so ingesting a file again is safe. Due steps
    are run by `dripflow worker`.
    """
    now = datetime.now(UTC)
    events = read_events(file, default_at=now, ordered=False, latest=now)
    engine = open_store(database)
    workspace_id = resolve_workspace(engine, workspace)
    report = ingest_events(engine, workspace_id, events, file)
    skipped = f", {report.duplicates} already applied before (same id)" if report.duplicates else ""
    typer.echo(f"applied {report.applied} event(s) to workspace {workspace_id}{skipped}")
