"""`dripflow outbox list` (SPEC §10, issue 5 "dev inbox"): what the engine built and where it stands.

With no SMTP configured every message stays in the outbox as ``captured``: this listing is the
built-in dev inbox. With SMTP it shows the delivery state too (queued, sending, sent, bounced,
failed, canceled) with the last error, which is where an operator looks first when mail is stuck.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from dripflow.cli.options import DatabaseOption, WorkspaceOption
from dripflow.cli.store import open_store, resolve_workspace
from dripflow.core.errors import UserError
from dripflow.store.database import transaction
from dripflow.store.tables import Message

app = typer.Typer(help="The outbox: messages captured, queued and sent.", no_args_is_help=True)

STATUSES = ("captured", "queued", "sending", "sent", "bounced", "failed", "canceled")


@app.command("list")
def list_command(
    status: Annotated[
        str | None, typer.Option("--status", help=f"Only messages in this status ({', '.join(STATUSES)}).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest first.")] = 50,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """List the newest messages of the outbox: when, status, channel, to, subject, mailbox."""
    if status is not None and status not in STATUSES:
        raise UserError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
    engine = open_store(database)
    workspace_id = resolve_workspace(engine, workspace)
    stmt = select(Message).where(Message.workspace_id == workspace_id)
    if status is not None:
        stmt = stmt.where(Message.status == status)
    with transaction(engine) as session:
        rows = list(session.scalars(stmt.order_by(Message.id.desc()).limit(limit)))
    engine.dispose()
    if not rows:
        typer.echo(f"no {status + ' ' if status else ''}messages in workspace {workspace_id}")
        return
    table = Table("id", "created (UTC)", "status", "channel", "to", "subject", "mailbox", "detail")
    for row in rows:
        table.add_row(
            str(row.id),
            _when(row.created_at),
            row.status,
            row.channel,
            row.recipient,
            row.subject or "",
            row.mailbox or "",
            _detail(row),
        )
    _console().print(table, markup=False, highlight=False)


def _console() -> Console:
    """Made per call so that COLUMNS is honoured; piped output is not squeezed to 80 columns."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 200))


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment is not None else ""


def _detail(row: Message) -> str:
    if row.status == "sent":
        return f"sent {_when(row.sent_at)}"
    if row.status == "queued" and row.next_attempt_at is not None:
        return f"retry {_when(row.next_attempt_at)} after {row.attempts} tries: {row.last_error or ''}"
    if row.status == "queued" and row.not_before is not None:
        return f"not before {_when(row.not_before)}"
    return row.last_error or ""
