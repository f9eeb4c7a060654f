"""`dripflow events ingest FILE.jsonl` (SPEC §10): X2 events applied to a database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from dripflow.cli.options import DatabaseOption, WorkspaceOption
from dripflow.cli.store import open_store, resolve_workspace
from dripflow.engine.eventfile import MAX_REPORTED, read_events
from dripflow.engine.ingest_file import ingest_events

app = typer.Typer(help="Apply events (X2) to the database.", no_args_is_help=True)


@app.command("ingest")
def ingest_command(
    file: Annotated[Path, typer.Argument(help="Events, one JSON object a line (SPEC X2).")],
    database: DatabaseOption = None,
    workspace: WorkspaceOption = None,
    atomic: Annotated[
        bool, typer.Option("--atomic", help="Apply nothing if any line is bad or any event refused.")
    ] = False,
) -> None:
    """Apply the events of FILE; `at` is optional and defaults to now.

    Each event is applied whole or not at all. Bad lines and refused events are reported as
    FILE:LINE and the others applied (exit 1 if any failed); `--atomic` applies the file all or
    none. Events with an `id` are applied at most once, so ingesting a file again is safe. Due
    steps are run by `dripflow worker`.
    """
    now = datetime.now(UTC)
    bad_lines: list[str] | None = None if atomic else []
    events = read_events(file, default_at=now, ordered=False, latest=now, bad_lines=bad_lines)
    engine = open_store(database)
    workspace_id = resolve_workspace(engine, workspace)
    report = ingest_events(engine, workspace_id, events, file, atomic=atomic)
    skipped = f", {report.duplicates} already applied before (same id)" if report.duplicates else ""
    typer.echo(f"applied {report.applied} event(s) to workspace {workspace_id}{skipped}")
    failed = sorted([*(bad_lines or []), *report.refused], key=_line_order)
    if failed:
        for problem in failed[:MAX_REPORTED]:
            typer.echo(problem, err=True)
        if len(failed) > MAX_REPORTED:
            typer.echo(f"… and {len(failed) - MAX_REPORTED} more", err=True)
        typer.echo(
            f"{len(failed)} line(s) failed and were not applied; the others were. Fix those lines and "
            "ingest them alone (events with an `id` are applied once, so ingesting the whole file "
            "again is safe only if every event has one).",
            err=True,
        )
        raise typer.Exit(1)


def _line_order(problem: str) -> int:
    """``FILE:LINE: problem`` sorts by its line number."""
    head = problem.split(": ", 1)[0]
    number = head.rsplit(":", 1)[-1]
    return int(number) if number.isdigit() else 0
