"""`dripflow worker [--until-idle]` (SPEC §10): the scheduler on the wall clock."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from dripflow.cli.options import DatabaseOption, WorkspaceOption
from dripflow.cli.store import open_store, resolve_workspace
from dripflow.core.clock import SystemClock
from dripflow.engine.worker import run_worker
from dripflow.tracking.tokens import ENV_SECRET


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_command)


def worker_command(
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Exit as soon as nothing is due now.")
    ] = False,
    poll: Annotated[
        float, typer.Option("--poll", min=0.05, help="Seconds between looks when nothing is due.")
    ] = 1.0,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Run due steps, in batches, for every workspace (or the one given) until stopped.

    SIGTERM or Ctrl-C stops it after the batch in hand: a batch commits whole or not at all.
    Several workers may share one PostgreSQL database; each due enrollment is taken by one.
    """
    if not os.environ.get(ENV_SECRET):
        typer.echo(
            f"warning: {ENV_SECRET} is not set; the links in the emails built now are signed with a "
            "development key anyone can read",
            err=True,
        )
    engine = open_store(database)
    ids = [resolve_workspace(engine, workspace)] if workspace is not None else None
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        stats = run_worker(
            engine,
            SystemClock(),
            workspace_ids=ids,
            until_idle=until_idle,
            poll=poll,
            stop=stop,
        )
    except KeyboardInterrupt:
        stop.set()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        engine.dispose()
    typer.echo(f"ran {stats.claimed} due enrollment(s) in {stats.batches} batch(es)")
