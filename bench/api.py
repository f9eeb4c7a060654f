"""`python -m bench api`: events posted over HTTP to `dripflow serve` in another process, events per
second and request latency (issue 7).

The server is the real command, ``dripflow serve`` (uvicorn, the worker thread beside it), run as a
child process on a loopback port, on a file SQLite database holding one workspace (one list, no
sequences or automations: the figure is the API's and the ingestion's, not the engine's reactions)
and an API key with the write role. ``DRIPFLOW_SECRET_KEY`` is set to a random value, as in a real
deployment. Once ``/readyz`` answers, this process posts ``list.subscribed`` events for distinct new
contacts (each with an ``id``, as a client that retries should send) to ``POST /v1/events`` with
httpx's AsyncClient, ``--concurrency`` requests in flight, one event per request (``--batch B``:
``{"events": [...]}`` with B events each). Every request's latency is measured; any answer other
than 2xx with every event applied is an error, and any error fails the run. A few warm-up requests
(new contacts too) go first and are not timed. Afterwards the database must hold every contact,
subscribed to the list.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.report import finish, say
from dripflow.core.validate import load_workspace_text
from dripflow.store.apikeys import create_key
from dripflow.store.database import make_engine, transaction
from dripflow.store.migrate import upgrade
from dripflow.store.tables import Contact, ContactList
from dripflow.store.workspaces import apply_workspace
from dripflow.tracking.tokens import ENV_SECRET

WS_ID = "bench"
LIST = "newsletter"
APPLIED = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
WORKSPACE = """\
workspace: {id: bench, name: Bench, timezone: UTC, physical_address: "1 Main St, Springfield"}
mailboxes:
  - {id: news, from: "News <news@bench.test>", default: true}
lists: [newsletter]
"""
START_TIMEOUT = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=20_000, help="events posted (default 20,000)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--batch", type=int, default=1, help="events per request (default 1)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests first (default 50)")
    parser.add_argument("--no-worker", action="store_true", help="serve with --no-worker")


@dataclass
class Load:
    """What the load generator saw."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    applied: int = 0
    samples: list[str] = field(default_factory=list)  # the first few errors, for the report


def run(args: argparse.Namespace) -> None:
    events = 200 if args.quick else args.events
    warmup = min(args.warmup, 10) if args.quick else args.warmup
    batch, concurrency = args.batch, args.concurrency
    if events % batch:
        raise SystemExit(f"--events ({events}) must be a multiple of --batch ({batch})")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        key = _setup(url)
        port = _free_port()
        log_path = Path(tmp) / "serve.log"
        command = [
            sys.executable, "-m", "dripflow.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--database", url, *(["--no-worker"] if args.no_worker else []),
        ]  # fmt: skip
        env = {**os.environ, ENV_SECRET: secrets.token_urlsafe(32)}
        env.pop("DRIPFLOW_SMTP_URL", None)
        with log_path.open("w", encoding="utf-8") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            started = time.perf_counter()
            _wait_ready(base, server)
            say(f"dripflow serve ready on {base} in {time.perf_counter() - started:.2f}s (pid {server.pid})")
            headers = {"Authorization": f"Bearer {key}"}
            say(f"warm-up: {warmup} requests of {batch} event(s)")
            warm = asyncio.run(_load(base, headers, "w", warmup * batch, batch, concurrency))
            if warm.errors:
                raise SystemExit(f"warm-up: {warm.errors} errors, e.g. {warm.samples}")
            say(f"load: {events} events, {batch} per request, {concurrency} requests in flight")
            cpu = time.process_time()
            started = time.perf_counter()
            load = asyncio.run(_load(base, headers, "c", events, batch, concurrency))
            seconds = time.perf_counter() - started
            client_cpu = time.process_time() - cpu
        finally:
            code = _stop(server)
            if code != 0:  # SIGTERM: dripflow serve finishes what it has in hand and exits 0
                tail = log_path.read_text(encoding="utf-8")[-4000:]
                say(f"dripflow serve exited with {code}; the end of its log:\n{tail}")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        contacts, subscribed = _stored(url)
    expected = warmup * batch + events
    if load.errors:
        raise SystemExit(f"{load.errors} requests failed, e.g. {load.samples}")
    if load.applied != events or contacts != expected or subscribed != expected:
        raise SystemExit(
            f"wrong outcome: {load.applied} of {events} events applied; the database holds {contacts} "
            f"contacts, {subscribed} on the list, expected {expected}"
        )
    requests = len(load.latencies)
    ordered = sorted(load.latencies)
    figures: dict[str, Any] = {
        "events": events,
        "batch": batch,
        "requests": requests,
        "concurrency": concurrency,
        "worker": not args.no_worker,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds, 1),
        "requests_per_s": round(requests / seconds, 1),
        "p50_ms": _percentile_ms(ordered, 0.50),
        "p90_ms": _percentile_ms(ordered, 0.90),
        "p99_ms": _percentile_ms(ordered, 0.99),
        "max_ms": round(ordered[-1] * 1000, 1),
        "errors": load.errors,
        "contacts_stored": contacts,
        "client_cpu_s": round(client_cpu, 2),
        "server_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "server_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "load_average": round(os.getloadavg()[0], 2),
    }
    say(
        f"{events} events in {seconds:.2f}s: {figures['events_per_s']:.0f} events/s, "
        f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms; {contacts} contacts stored"
    )
    finish("api", figures)


def _percentile_ms(ordered: list[float], q: float) -> float:
    """The nearest-rank percentile, in milliseconds."""
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000, 2)


# -- the server -----------------------------------------------------------------------------------


def _setup(url: str) -> str:
    """A migrated database with the workspace and a write key; returns the key."""
    upgrade(url)
    engine = make_engine(url)
    try:
        with transaction(engine) as session:
            apply_workspace(session, load_workspace_text(WORKSPACE, "bench.yaml"), now=APPLIED, actor="bench")
            return create_key(session, WS_ID, "write", APPLIED, "bench api")
    finally:
        engine.dispose()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(base_url=base, timeout=2) as client:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"dripflow serve exited with {server.returncode} before it was ready")
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"dripflow serve was not ready after {START_TIMEOUT:.0f}s")
            time.sleep(0.1)


def _stop(server: subprocess.Popen[bytes]) -> int:
    """SIGTERM (requests in flight finish, the worker thread stops, exit 0), then SIGKILL if it hangs."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return server.returncode


def _stored(url: str) -> tuple[int, int]:
    """Contacts in the workspace, and how many of them are on the list."""
    engine = make_engine(url)
    try:
        with transaction(engine) as session:
            contacts = session.scalar(
                select(func.count()).select_from(Contact).where(Contact.workspace_id == WS_ID)
            )
            subscribed = session.scalar(
                select(func.count())
                .select_from(ContactList)
                .where(
                    ContactList.workspace_id == WS_ID,
                    ContactList.list == LIST,
                    ContactList.unsubscribed_at.is_(None),
                )
            )
        return contacts or 0, subscribed or 0
    finally:
        engine.dispose()


# -- the load -------------------------------------------------------------------------------------


def _event(prefix: str, n: int) -> dict[str, Any]:
    return {
        "type": "list.subscribed",
        "list": LIST,
        "contact": {"email": f"{prefix}{n}@bench.test", "first_name": f"C{n}"},
        "id": f"bench-{prefix}{n}",
    }


def _bodies(prefix: str, events: int, batch: int) -> Iterator[dict[str, Any]]:
    for first in range(0, events, batch):
        if batch == 1:
            yield _event(prefix, first)
        else:
            yield {"events": [_event(prefix, n) for n in range(first, first + batch)]}


async def _load(
    base: str, headers: dict[str, str], prefix: str, events: int, batch: int, concurrency: int
) -> Load:
    """``concurrency`` clients, each posting the next body as soon as its previous answer came."""
    load = Load()
    bodies = _bodies(prefix, events, batch)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        for body in bodies:  # one shared iterator: each body is posted once
            began = time.perf_counter()
            try:
                answer = await client.post("/v1/events", json=body)
            except httpx.HTTPError as exc:
                load.latencies.append(time.perf_counter() - began)
                _error(load, f"{type(exc).__name__}: {exc}")
                continue
            load.latencies.append(time.perf_counter() - began)
            if not answer.is_success:
                _error(load, f"{answer.status_code} {answer.text[:300]}")
                continue
            applied = answer.json().get("applied")
            if applied != batch:
                _error(load, f"{answer.status_code} {answer.text[:300]}")
                continue
            load.applied += applied

    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=120) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    return load


def _error(load: Load, text: str) -> None:
    load.errors += 1
    if len(load.samples) < 3:
        load.samples.append(text)
