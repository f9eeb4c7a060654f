"""`dripflow serve`: the HTTP API with the scheduler running beside it, in one process (SPEC §10).

Stopping: SIGTERM or Ctrl-C. uvicorn stops taking connections and finishes the requests in flight
(30 s at most); then the worker thread is told to stop, which it does after the batch in hand (a
scheduler batch commits whole; delivery finishes sending and recording the batch it claimed); then
the database is closed and the process exits 0. uvicorn would re-raise the signal once it has shut
down, which kills the process before any of that (exit 143); so the signal handlers in place while
it runs are ours, and they only note the signal.

Logs go to stderr, one record per line: JSON objects by default (``--log-format json``: ``time``,
``level``, ``event``, ``workspace`` and ``counts`` where they apply, and the event's own fields), or
aligned text for a person at a terminal (``--log-format text``). Records: ``request`` (one per HTTP
request: method, route template, status, milliseconds), ``scheduler.pass`` (per workspace pass that
found work), ``delivery.batch`` (per batch of email delivered), and ``serve.*`` for the process.

``--demo``: applies examples/demo-live.yaml (a workspace whose sequence counts in minutes), subscribes
three new contacts, makes an admin key and prints where to look; the emails land in the dev inbox
(the capture outbox) over the next few minutes.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
import uvicorn
from sqlalchemy import Engine

from dripflow.api.app import create_app
from dripflow.cli.options import DatabaseOption
from dripflow.cli.store import open_store
from dripflow.core.clock import Clock, SystemClock
from dripflow.core.errors import UserError
from dripflow.core.validate import WorkspaceInvalid, load_workspace_file
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.engine.worker import run_worker
from dripflow.store.apikeys import create_key
from dripflow.store.database import DEFAULT_DATABASE_URL, database_url, transaction
from dripflow.store.workspaces import apply_workspace
from dripflow.tracking.tokens import ENV_SECRET

log = logging.getLogger("dripflow.serve")

LOG_FORMATS = ("json", "text")
GRACEFUL_SECONDS = 30
"""How long in-flight requests, then the worker's batch in hand, may take once a stop is asked."""
DEMO_FILE = Path("examples") / "demo-live.yaml"
DEMO_LIST = "newsletter"
DEMO_PEOPLE = (("ann", "Ann"), ("bob", "Bob"), ("cy", "Cy"))


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
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help=f"Apply {DEMO_FILE} (minute delays), subscribe three contacts, print an admin key and "
            "where to look. Implies --dev-secret.",
        ),
    ] = False,
    log_format: Annotated[
        str, typer.Option("--log-format", help="Logs on stderr: json (one object per line) or text.")
    ] = "json",
    database: DatabaseOption = None,
) -> None:
    """Serve the API under /v1 (OpenAPI at /openapi.json, docs at /docs) with the scheduler; SIGTERM
    or Ctrl-C finishes the work in hand and exits 0."""
    if log_format not in LOG_FORMATS:
        raise UserError(f"--log-format must be json or text, not {log_format!r}")
    if not os.environ.get(ENV_SECRET) and not (dev_secret or demo):
        raise UserError(
            f"{ENV_SECRET} is not set: tracking and unsubscribe links would be signed with a key anyone "
            f"can read. Set it to a long random value (or pass --dev-secret for a local demo)"
        )
    configure_logging(log_format)
    engine = open_store(database)
    clock = SystemClock()
    try:
        if demo:
            _start_demo(engine, clock, host, port, database)
        code = _serve(engine, clock, host, port, worker)
    finally:
        engine.dispose()
    raise typer.Exit(code)


def _serve(engine: Engine, clock: Clock, host: str, port: int, worker: bool) -> int:
    """Run until stopped; returns the exit code (0: stopped as asked)."""
    config = uvicorn.Config(
        create_app(engine, clock),
        host=host,
        port=port,
        log_config=None,  # uvicorn's records go through our handler, as everything else does
        access_log=False,  # requests are logged by the app (route templates, never raw paths)
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
    server = uvicorn.Server(config)
    stop = threading.Event()
    failed: list[BaseException] = []

    def work() -> None:
        try:
            run_worker(engine, clock, stop=stop)
        except BaseException as exc:  # the scheduler died: stop serving, so a supervisor restarts us
            failed.append(exc)
            log.exception("the worker stopped on an error", extra={"event": "serve.worker_failed"})
            server.should_exit = True

    thread = threading.Thread(target=work, name="dripflow-worker", daemon=True) if worker else None
    received: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)  # uvicorn re-raises the signal after its shutdown: nothing more to do

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if thread is not None:
            thread.start()
        log.info(
            f"serving on http://{host}:{port}",
            extra={"event": "serve.started", "fields": {"url": f"http://{host}:{port}", "worker": worker}},
        )
        server.run()  # returns once a SIGTERM/SIGINT has been handled and requests are finished
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=GRACEFUL_SECONDS)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise UserError(f"could not serve on {host}:{port} (see the log above)")
    if thread is not None and thread.is_alive():
        log.error(
            f"the worker did not finish its batch within {GRACEFUL_SECONDS}s",
            extra={"event": "serve.stopped", "fields": {"clean": False}},
        )
        return 1
    signals = [signal.Signals(sig).name for sig in received]
    log.info("stopped", extra={"event": "serve.stopped", "fields": {"clean": not failed, "signals": signals}})
    return 1 if failed else 0


# -- the demo ----------------------------------------------------------------------------------------


def _demo_file() -> Path:
    """examples/demo-live.yaml of the current directory, else of the source tree dripflow runs from."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (root / DEMO_FILE).is_file():
            return root / DEMO_FILE
    raise UserError(f"--demo needs {DEMO_FILE}; run it from the dripflow source tree")


def _start_demo(engine: Engine, clock: Clock, host: str, port: int, database: str | None) -> None:
    """Apply the live demo workspace, subscribe three new contacts and print where to look."""
    path = _demo_file()
    try:
        model = load_workspace_file(path)
    except WorkspaceInvalid as exc:
        raise UserError(f"{path} is not a valid workspace: {exc.problems[0]}") from None
    workspace_id = model.workspace.id
    now = clock.now()
    with transaction(engine) as session:
        apply_workspace(session, model, now=now, actor="serve --demo")
        key = create_key(session, workspace_id, "admin", now, "serve --demo")
    stamp = now.strftime("%H%M%S")
    emails = [f"{name}.{stamp}@example.com" for name, _first in DEMO_PEOPLE]
    events = [
        InputEvent(
            n,
            now,
            {
                "type": "list.subscribed",
                "list": DEMO_LIST,
                "contact": {"email": email, "first_name": first},
                "id": f"serve-demo:{stamp}:{name}",
            },
        )
        for n, ((name, first), email) in enumerate(zip(DEMO_PEOPLE, emails, strict=True), start=1)
    ]
    ingest_events(engine, workspace_id, events, Path("serve --demo"))
    url = f"http://{host}:{port}"
    program = sys.argv[0] if Path(sys.argv[0]).name == "dripflow" else "dripflow"
    used = database or database_url()
    where = "" if used == DEFAULT_DATABASE_URL else f" --database {used}"
    auth = f'-H "Authorization: Bearer {key}"'
    typer.echo(
        f"""
Live demo: workspace {workspace_id!r} from {DEMO_FILE}.
Just now {len(emails)} new contacts subscribed to {DEMO_LIST}: {", ".join(emails)}.
Its welcome sequence emails each at once, then 1, 3 and 6 minutes later. Nothing leaves this
machine: the emails land in the dev inbox (the capture outbox).

  API docs     {url}/docs
  admin key    {key}
  dev inbox    {program} outbox list --workspace {workspace_id}{where}
  one contact  curl -s {auth} {url}/v1/contacts/{emails[0]}/explain
  add someone  curl -s {auth} -H 'content-type: application/json' \\
                 -d '{{"type": "list.subscribed", "list": "{DEMO_LIST}", "contact": "you@example.com"}}' \\
                 {url}/v1/events

Stop with Ctrl-C (or SIGTERM): requests in flight and the batch in hand are finished first.
""",
    )


# -- logs --------------------------------------------------------------------------------------------


def configure_logging(log_format: str) -> None:
    """One handler on stderr for everything (dripflow's records, uvicorn's, libraries' warnings)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if log_format == "json" else TextLines())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its schema check runs at every start


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """What a record says: its event (or its message, for records not written as events), the
    workspace and counts where given, the event's own fields, the error if there was one."""
    event = getattr(record, "event", None)
    out: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "event": event or record.getMessage(),
    }
    if event is None:
        out["logger"] = record.name
    elif record.getMessage() != event:
        out["message"] = record.getMessage()
    for name in ("workspace", "counts"):
        value = getattr(record, name, None)
        if value is not None:
            out[name] = value
    extra = getattr(record, "fields", None)
    if isinstance(extra, dict):
        out.update(extra)
    if record.exc_info:
        out["error"] = logging.Formatter().formatException(record.exc_info)
    return out


class JsonLines(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str, ensure_ascii=False)


class TextLines(logging.Formatter):
    """``TIME LEVEL EVENT key=value …``: the same fields, for a person."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        if record.levelno < logging.WARNING:
            fields.pop("message", None)  # the event names it
        head = f"{fields.pop('time')} {fields.pop('level').upper():<7} {fields.pop('event')}"
        error = fields.pop("error", None)
        counts = fields.pop("counts", None) or {}
        rest = [f"{name}={value}" for name, value in {**fields, **counts}.items()]
        line = " ".join([head, *rest])
        return f"{line}\n{error}" if error else line
