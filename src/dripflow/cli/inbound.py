"""`dripflow inbound REPORT.eml ...`: bounce (RFC 3464) and complaint (RFC 5965) reports in (D5)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from dripflow.cli.options import DatabaseOption, WorkspaceOption
from dripflow.cli.store import open_store, resolve_workspace
from dripflow.core.errors import UserError
from dripflow.delivery.reports import ReportFile, ingest_reports


def register(app: typer.Typer) -> None:
    app.command("inbound")(inbound_command)


def inbound_command(
    files: Annotated[list[Path], typer.Argument(help="Raw report messages (.eml), as received.")],
    database: DatabaseOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Apply bounce and complaint reports: hard bounces and complaints blacklist the contact and
    close its enrollments (L1, L2); three soft bounces in a row do too. All files or none."""
    reports = []
    for path in files:
        try:
            reports.append(ReportFile(str(path), path.read_bytes()))
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None
    engine = open_store(database)
    workspace_id = resolve_workspace(engine, workspace)
    report = ingest_reports(engine, workspace_id, reports, datetime.now(UTC))
    skipped = f", {report.duplicates} already applied before" if report.duplicates else ""
    typer.echo(f"applied {report.applied} event(s) from {len(reports)} report(s){skipped}")
