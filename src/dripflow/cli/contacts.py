"""`dripflow contacts import|export`: CSV in and out, with progress and a report of rejected rows."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from dripflow.cli.options import DatabaseOption, WorkspaceOption
from dripflow.cli.store import open_store, resolve_workspace
from dripflow.core.clock import SystemClock
from dripflow.core.errors import UserError
from dripflow.csvio.contacts_export import export_contacts
from dripflow.csvio.contacts_import import ImportReport, import_contacts
from dripflow.store.database import transaction
from dripflow.store.workspaces import declared_fields, declared_lists

app = typer.Typer(help="Import and export contacts.", no_args_is_help=True)
_out = Console(soft_wrap=True)  # report lines stay whole when piped or logged


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV with a header row; an `email` column is required.")],
    list_key: Annotated[str | None, typer.Option("--list", help="Subscribe every imported contact.")] = None,
    rejects: Annotated[
        Path | None, typer.Option("--rejects", help="Write rejected rows, with line and reason, here.")
    ] = None,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Create or update contacts from a CSV file, matched by email (SPEC §10, L4)."""
    engine = open_store(database)
    workspace_id = resolve_workspace(engine, workspace)
    with transaction(engine) as session:
        fields = declared_fields(session, workspace_id)
        lists = declared_lists(session, workspace_id)
    if list_key is not None and list_key not in lists:
        raise UserError(
            f"unknown list {list_key!r} in workspace {workspace_id!r} (lists: {', '.join(lists)})"
        )
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc.strerror}") from None
    if rejects is not None:
        rejects.parent.mkdir(parents=True, exist_ok=True)
    progress = Progress(
        TextColumn("importing {task.fields[name]}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=_out,
        transient=False,
    )
    with progress, rejects.open("w", newline="", encoding="utf-8") if rejects else nullcontext() as sink:
        task = progress.add_task("import", total=size, name=file.name)
        report = import_contacts(
            engine,
            workspace_id,
            file,
            now=SystemClock().now(),
            fields=fields,
            list_key=list_key,
            rejects=sink,
            on_bytes=lambda n: progress.advance(task, n),
        )
    _print_report(report, rejects)
    if report.rows and report.rejected == report.rows:
        raise typer.Exit(1)


@app.command("export")
def export_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Write all contacts as CSV, with spreadsheet formulas neutralised."""
    engine = open_store(database)
    workspace_id = resolve_workspace(engine, workspace)
    with transaction(engine) as session:
        keys = list(declared_fields(session, workspace_id))
    if output is None:
        export_contacts(engine, workspace_id, sys.stdout, keys)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="", encoding="utf-8") as sink:
        count = export_contacts(engine, workspace_id, sink, keys)
    typer.echo(f"exported {count} contacts to {output}", err=True)


def _print_report(report: ImportReport, rejects: Path | None) -> None:
    _out.print(
        f"{report.rows} rows: {report.created} created, {report.updated} updated, "
        f"{report.rejected} rejected, {report.suggested} with a likely email typo",
        highlight=False,
    )
    if report.ignored_columns:
        _out.print(
            f"ignored columns (not declared fields): {', '.join(report.ignored_columns)}", highlight=False
        )
    for issue in report.rejected_sample:
        _out.print(
            f"  line {issue.line}: rejected {issue.email or '(no email)'}: {issue.message}", markup=False
        )
    if report.rejected > len(report.rejected_sample):
        where = f"; all of them are in {rejects}" if rejects else "; pass --rejects FILE to get them all"
        _out.print(
            f"  … and {report.rejected - len(report.rejected_sample)} more rejected{where}", markup=False
        )
    for issue in report.suggestion_sample:
        _out.print(f"  line {issue.line}: {issue.email}: {issue.message}", markup=False)
    if report.suggested > len(report.suggestion_sample):
        _out.print(
            f"  … and {report.suggested - len(report.suggestion_sample)} more likely typos", markup=False
        )
