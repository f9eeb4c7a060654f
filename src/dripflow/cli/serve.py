"""`dripflow serve`: the HTTP API with the scheduler running beside it, in one process (SPEC §10)."""

from __future__ import annotations

import os
import threading
from typing import Annotated

import typer
import uvicorn

from dripflow.api.app import create_app
from dripflow.cli.options import DatabaseOption
from dripflow.cli.store import open_store
from dripflow.core.clock import SystemClock
from dripflow.core.errors import UserError
from dripflow.engine.worker import run_worker
from dripflow.tracking.tokens import ENV_SECRET


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Run the scheduler in this process too.")
    ] = True,
    dev_secret: Annotated[
        bool,
        typer.Option(
            "--dev-secret",
            help="Allow running without DRIPFLOW_SECRET_KEY (links signed with a public key: demos only).",
        ),
    ] = False,
    database: DatabaseOption = None,
) -> None:
    """Serve the API under /v1 (OpenAPI at /openapi.json, docs at /docs); Ctrl-C or SIGTERM stops it."""
    if not os.environ.get(ENV_SECRET) and not dev_secret:
        raise UserError(
            f"{ENV_SECRET} is not set: tracking and unsubscribe links would be signed with a key anyone "
            f"can read. Set it to a long random value (or pass --dev-secret for a local demo)"
        )
    engine = open_store(database)
    clock = SystemClock()
    stop = threading.Event()
    thread = None
    if worker:
        thread = threading.Thread(
            target=run_worker,
            args=(engine, clock),
            kwargs={"stop": stop},
            name="dripflow-worker",
            daemon=True,
        )
        thread.start()
    typer.echo(f"dripflow serving on http://{host}:{port} (API under /v1, docs at /docs)")
    try:
        uvicorn.run(create_app(engine, clock), host=host, port=port, log_level="warning")
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=30)
        engine.dispose()
