"""`dripflow serve` as an operator runs it (SPEC §10): the API key check is a read, and the real
command in a child process: SIGTERM finishes the work in flight and exits 0, logs are one JSON
object per line, and ``--demo`` brings up a workspace whose enrollments advance within minutes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, func, select

from dripflow.api import deps
from dripflow.core.validate import load_workspace_text
from dripflow.store.apikeys import Credential, create_key
from dripflow.store.database import make_engine, transaction
from dripflow.store.tables import Contact, Enrollment, Message
from dripflow.store.workspaces import apply_workspace
from tests.conftest import free_port

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WORKSPACE = """\
workspace: {id: shop, name: Shop, timezone: UTC, physical_address: "1 Main St"}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
lists: [news]
"""


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_key_check_does_not_wait_for_the_write_lock(engine: Engine) -> None:
    """A request's key check is a plain read: while another connection holds SQLite's write lock
    (as an ingest does), it still answers at once, and a revoked key is refused at once."""
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(WORKSPACE, "shop.yaml"), now=NOW, actor="test")
        key = create_key(session, "shop", "write", NOW)
    database = engine.url.database
    assert database is not None
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        answers: list[object] = []
        checker = threading.Thread(target=lambda: answers.append(deps._check_key(engine, key)))
        started = time.monotonic()
        checker.start()
        checker.join(timeout=5)
        assert not checker.is_alive(), "the key check waited for the write lock"
        assert time.monotonic() - started < 2
        [credential] = answers
        assert credential == Credential("shop", "write", key.split("_")[1])
        assert deps._check_key(engine, key[:-2] + "xx") is None  # wrong secret
        assert deps._check_key(engine, "df_nope_nope") is None
        holder.execute("UPDATE api_keys SET revoked_at = '2026-03-02 09:00:00'")
        holder.execute("COMMIT")
        assert deps._check_key(engine, key) is None  # revoked: refused from the next request on
    finally:
        holder.close()


# -- the real command in a child process ---------------------------------------------------------------

DRIPFLOW = Path(sys.executable).with_name("dripflow")


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str
    stdout: Path
    stderr: Path

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def log(self) -> list[dict[str, Any]]:
        """The JSON log records written so far (every line must be one)."""
        return [json.loads(line) for line in self.stderr.read_text().splitlines() if line.strip()]


@contextmanager
def _serve(tmp_path: Path, db_url: str, *args: str, smtp_url: str | None = None) -> Iterator[Served]:
    """``dripflow serve`` on a free loopback port, ready (``/readyz``) when yielded; killed if a
    test leaves it running."""
    port = free_port()
    stdout, stderr = tmp_path / "serve.out", tmp_path / "serve.err"
    env = {key: value for key, value in os.environ.items() if not key.startswith("DRIPFLOW_")}
    env["DRIPFLOW_SECRET_KEY"] = "serve-test-secret"
    if smtp_url is not None:
        env["DRIPFLOW_SMTP_URL"] = smtp_url
    with stdout.open("w") as out, stderr.open("w") as err:
        proc = subprocess.Popen(
            [str(DRIPFLOW), "serve", "--port", str(port), "--database", db_url, *args],
            stdout=out,
            stderr=err,
            env=env,
            cwd=tmp_path,
            text=True,
        )
    served = Served(proc, f"http://127.0.0.1:{port}", stdout, stderr)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{stderr.read_text()[-3000:]}"
            try:
                if httpx.get(f"{served.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not get ready"
            time.sleep(0.1)
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _events(count: int) -> dict[str, Any]:
    return {
        "events": [
            {"type": "list.subscribed", "list": "news", "contact": f"c{n}@x.test", "id": f"e{n}"}
            for n in range(count)
        ]
    }


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sigterm_finishes_the_request_in_flight_and_exits_0(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """SIGTERM while a large batch of events is being applied: the request is answered in full,
    everything it applied is there, the worker thread and the database are closed, exit code 0;
    stderr is one JSON object per line throughout."""
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(WORKSPACE, "shop.yaml"), now=NOW, actor="test")
        key = create_key(session, "shop", "write", NOW)
    count = 2_000
    with _serve(tmp_path, db_url) as served:
        answers: list[httpx.Response] = []

        def post() -> None:
            headers = {"Authorization": f"Bearer {key}"}
            answers.append(
                httpx.post(f"{served.url}/v1/events", json=_events(count), headers=headers, timeout=120)
            )

        client = threading.Thread(target=post)
        client.start()
        time.sleep(1.0)  # the request is being applied (2,000 events take seconds)
        assert client.is_alive(), "the request finished before the signal: make it larger"
        served.proc.send_signal(signal.SIGTERM)
        client.join(timeout=120)
        assert served.wait() == 0, served.stderr.read_text()[-3000:]
        [answer] = answers
        assert answer.status_code == 200 and answer.json() == {"applied": count, "duplicates": 0}
        records = served.log()
    with transaction(engine) as session:
        contacts = session.scalar(
            select(func.count()).select_from(Contact).where(Contact.workspace_id == "shop")
        )
    assert contacts == count
    assert all({"time", "level", "event"} <= set(record) for record in records)
    [request] = [record for record in records if record.get("route") == "/v1/events"]
    assert request | {"ms": 0} == {
        "time": request["time"],
        "level": "info",
        "event": "request",
        "workspace": "shop",
        "method": "POST",
        "route": "/v1/events",
        "status": 200,
        "ms": 0,
    }
    assert request["ms"] > 500
    stopped = records[-1]
    assert (stopped["event"], stopped["clean"], stopped["signals"]) == ("serve.stopped", True, ["SIGTERM"])
    events = [record["event"] for record in records]
    assert events.index("serve.started") < records.index(request) < events.index("serve.stopped")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sigterm_while_delivering_finishes_the_batch_in_hand(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """The worker thread is told to stop after uvicorn: the email batch it is sending is sent and
    recorded (nothing is left `sending`), then the process exits 0 with scheduler and delivery
    records in its log."""
    workspace = WORKSPACE + (
        "delivery:\n  smtp: {host: smtp.invalid, port: 25, security: none}\n"
        "templates:\n  hi: {subject: 'Hi', text: 'Hello.'}\n"
        "sequences:\n  - id: drip\n    start_when: [{event: list.subscribed, list: news}]\n"
        "    steps: [{id: one, type: email, template: hi}]\n"
    )
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(workspace, "shop.yaml"), now=NOW, actor="test")
        key = create_key(session, "shop", "write", NOW)
    handler = _SlowSink()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        with _serve(tmp_path, db_url, smtp_url=f"smtp://127.0.0.1:{controller.port}") as served:
            answer = httpx.post(
                f"{served.url}/v1/events",
                json=_events(300),
                headers={"Authorization": f"Bearer {key}"},
                timeout=60,
            )
            assert answer.status_code == 200
            deadline = time.monotonic() + 60
            while handler.received < 5:
                assert time.monotonic() < deadline, "nothing was delivered"
                time.sleep(0.02)
            served.proc.send_signal(signal.SIGTERM)
            assert served.wait() == 0, served.stderr.read_text()[-3000:]
            records = served.log()
    finally:
        controller.stop()
    with transaction(engine) as session:
        statuses = Counter(session.scalars(select(Message.status)))
    assert statuses["sending"] == 0, statuses  # the batch in hand was finished, not dropped
    assert statuses["sent"] == handler.received > 0
    assert statuses["sent"] < 300  # it stopped: the rest waits, queued, for the next start
    kinds = {record["event"] for record in records}
    assert {"serve.started", "request", "scheduler.pass", "delivery.batch", "serve.stopped"} <= kinds
    [batch, *_] = [record for record in records if record["event"] == "delivery.batch"]
    assert batch["workspace"] == "shop" and batch["counts"]["claimed"] == 100
    assert records[-1]["clean"] is True


class _SlowSink:
    """An SMTP server that accepts every message after a short pause (so delivery takes a while)."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.01)
        self.received += 1
        return "250 OK"


def test_demo_serves_a_live_workspace_and_says_where_to_look(db_url: str, tmp_path: Path) -> None:
    """`serve --demo` (no DRIPFLOW_SECRET_KEY needed): applies examples/demo-live.yaml, three new
    contacts get the first email in the dev inbox at once and their next step is due a minute later,
    and what it prints (the URL, an admin key, the dev inbox command) works."""
    with _serve(tmp_path, db_url, "--demo", "--log-format", "text") as served:
        deadline = time.monotonic() + 30
        engine = make_engine(db_url)
        try:
            while True:
                with transaction(engine) as session:
                    captured = list(
                        session.scalars(select(Message).where(Message.workspace_id == "acme-live"))
                    )
                if len(captured) >= 3:
                    break
                assert time.monotonic() < deadline, "the demo's first emails did not arrive"
                time.sleep(0.1)
            with transaction(engine) as session:
                enrollments = list(session.scalars(select(Enrollment)))
        finally:
            engine.dispose()
        printed = served.stdout.read_text()
        key = re.search(r"admin key\s+(df_\S+)", printed)
        email = re.search(r"/v1/contacts/(\S+@example\.com)/explain", printed)
        assert key and email and f"{served.url}/docs" in printed
        assert "outbox list --workspace acme-live" in printed
        explained = httpx.get(
            f"{served.url}/v1/contacts/{email.group(1)}/explain",
            headers={"Authorization": f"Bearer {key.group(1)}"},
            timeout=30,
        )
        assert explained.status_code == 200
        served.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert served.wait() == 0
        log_lines = served.stderr.read_text().splitlines()
    assert {message.status for message in captured} == {"captured"}
    assert {message.subject for message in captured} == {"Welcome, Ann", "Welcome, Bob", "Welcome, Cy"}
    assert len(enrollments) == 3
    for enrollment in enrollments:  # the next email (after 1 minute) is due within a minute or so
        assert enrollment.due_at is not None
        assert enrollment.due_at - datetime.now(UTC) < timedelta(seconds=75)
    assert any(
        " INFO    request " in line and "route=/v1/contacts/{contact}/explain" in line for line in log_lines
    )
