"""`dripflow simulate` (SPEC X1–X3)."""

from __future__ import annotations

import gc
import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from dripflow.cli.options import DatabaseOption, WorkspaceOption
from dripflow.cli.store import open_store, resolve_workspace
from dripflow.cli.workspace import report_problems
from dripflow.core.errors import UserError
from dripflow.core.validate import WorkspaceInvalid, load_workspace_file
from dripflow.explain import explain_contact
from dripflow.simulate import final_state, parse_at, read_events, simulate
from dripflow.store.database import transaction


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)
    app.command("explain")(explain_command)


def explain_command(
    contact: Annotated[str, typer.Argument(help="The contact's email or id.")],
    sequence: Annotated[str | None, typer.Option("--sequence", help="Only this sequence.")] = None,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Tell in plain sentences what happened to a contact and why, and what happens next (X5)."""
    engine = open_store(database)
    workspace_id = resolve_workspace(engine, workspace)
    with transaction(engine) as session:
        try:
            lines = explain_contact(session, workspace_id, contact, sequence)
        except LookupError as exc:
            raise UserError(str(exc)) from None
    for line in lines:
        typer.echo(line)


def simulate_command(
    file: Annotated[Path, typer.Argument(help="The workspace YAML file (SPEC §2).")],
    events: Annotated[Path, typer.Option("--events", help="Input events, one JSON object a line (X2).")],
    until: Annotated[str, typer.Option("--until", help="Stop at this ISO time (UTC with Z).")],
    start: Annotated[
        str | None, typer.Option("--start", help="Start here (default: the first event).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the log here instead of stdout.")] = None,
    state: Annotated[Path | None, typer.Option("--state", help="Write the final state as JSON.")] = None,
    explain: Annotated[
        str | None, typer.Option("--explain", help="Tell one contact's story instead of the log (X5).")
    ] = None,
) -> None:
    """Run the real engine on a virtual clock and print what it did, one JSON object a line (X1)."""
    try:
        workspace = load_workspace_file(file)
    except WorkspaceInvalid as exc:  # X4: simulate refuses an invalid file the same way
        report_problems(exc)
        raise typer.Exit(1) from None
    items = read_events(events)
    # Everything loaded so far (modules, the workspace, the events) lives for the whole run: keep
    # it out of the cyclic collector's full passes, which otherwise rescan it again and again.
    gc.freeze()
    directory = Path(tempfile.mkdtemp(prefix="dripflow-sim-"))
    try:
        result = simulate(
            workspace,
            items,
            parse_at(until, "--until"),
            parse_at(start, "--start") if start is not None else None,
            events_path=events,
            database_dir=directory,
        )
        if explain is not None:
            with transaction(result.engine) as session:
                try:
                    lines = explain_contact(session, result.workspace_id, explain)
                except LookupError as exc:
                    raise UserError(str(exc)) from None
            text = "".join(line + "\n" for line in lines)
        else:
            text = "".join(line + "\n" for line in result.lines())
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        else:
            typer.echo(text, nl=False)
        if state is not None:
            state.write_text(json.dumps(final_state(result), indent=2) + "\n", encoding="utf-8")
        result.engine.dispose()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
