"""Durable, signed webhooks for actions in other systems (SPEC A2), against a real HTTP server.

The receiver is a ``http.server`` started by the test on a free local port. It is first not
running at all (connection refused), then answers 503, then 200: nothing queued meanwhile is
lost, each webhook is delivered exactly once when it is back, and every signature verifies with
the secret named by ``delivery.integrations.secret_env`` as docs/webhooks.md describes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from dripflow.core.clock import VirtualClock
from dripflow.core.validate import load_workspace_text
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.engine.webhooks import (
    DELIVERY_HEADER,
    LEASE,
    SIGNATURE_HEADER,
    deliver_webhooks,
    http_post,
    next_webhook_due,
)
from dripflow.store.database import transaction
from dripflow.store.tables import JournalEntry, WebhookDelivery
from dripflow.store.workspaces import apply_workspace
from tests.conftest import free_port

WS_ID = "shop"
SECRET_ENV = "DRIPFLOW_TEST_HOOK_SECRET"
SECRET = "s3cret-for-tests"
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A local HTTP endpoint; ``status`` is what it answers, ``requests`` what it got."""

    port: int
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(
                    Received(self.path, dict(self.headers.items()), body, receiver.status)
                )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def delivered(self) -> list[Received]:
        return [item for item in self.requests if 200 <= item.status < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Not started: the test decides when the receiving server comes up."""
    item = Receiver(free_port())
    yield item
    item.stop()


def _workspace(receiver: Receiver) -> str:
    return f"""\
workspace: {{id: shop, name: Shop, timezone: UTC, physical_address: "1 Main St"}}
mailboxes:
  - {{id: ann, from: "Ann <ann@shop.test>", default: true}}
delivery:
  integrations: {{webhook: "{receiver.url("/hooks")}", secret_env: {SECRET_ENV}}}
tags: [vip, refund]
catalog:
  products: [course]
  memberships: {{academy: [basic, pro]}}
  webinars: [launch]
automations:
  - id: vip-perks
    when: {{event: tag.assigned, tag: vip}}
    then:
      - {{grant_membership: {{membership: academy, level: pro}}}}
      - {{register_webinar: launch}}
      - {{webhook: {{url: "{receiver.url("/custom")}", payload: {{source: dripflow, n: 1}}}}}}
"""


def _setup(engine: Engine, receiver: Receiver, contacts: int) -> None:
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(_workspace(receiver), "shop.yaml"), now=START, actor="t")
    events = [
        InputEvent(n, START, {"type": "tag.assigned", "contact": f"c{n}@x.test", "tag": "vip"})
        for n in range(1, contacts + 1)
    ]
    ingest_events(engine, WS_ID, events, Path("events.jsonl"))


def _rows(engine: Engine) -> list[WebhookDelivery]:
    with transaction(engine) as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def _verifies(item: Received) -> bool:
    """What docs/webhooks.md tells a receiver to do: HMAC-SHA256 of the raw body, hex, constant-time."""
    expected = "sha256=" + hmac.new(SECRET.encode(), item.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, item.headers.get(SIGNATURE_HEADER, ""))


def test_a2_actions_elsewhere_queue_durable_webhooks_and_journal_them(
    engine: Engine, receiver: Receiver
) -> None:
    """A2: each action in another system queues a webhook in the engine's transaction (the engine
    does not wait for the receiver, which is not even running) and logs `webhook.queued`."""
    _setup(engine, receiver, 2)
    rows = _rows(engine)
    assert [(row.event, row.url, row.status) for row in rows] == [
        ("membership.granted", receiver.url("/hooks"), "pending"),
        ("webinar.registered", receiver.url("/hooks"), "pending"),
        ("webhook", receiver.url("/custom"), "pending"),
    ] * 2
    assert len({row.key for row in rows}) == 6
    with transaction(engine) as session:
        queued = [
            data for data in session.scalars(select(JournalEntry.data)) if data["kind"] == "webhook.queued"
        ]
    assert queued[:3] == [
        {"kind": "webhook.queued", "contact": "c1@x.test", "url": receiver.url("/hooks"), "event": event}
        for event in ("membership.granted", "webinar.registered")
    ] + [
        {"kind": "webhook.queued", "contact": "c1@x.test", "url": receiver.url("/custom"), "event": "webhook"}
    ]
    assert len(queued) == 6


def test_a2_nothing_is_lost_while_the_receiver_is_down_and_each_is_delivered_once(
    engine: Engine, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A2: down (connection refused), then failing (503), then back: retried with backoff, every
    webhook delivered exactly once, each signature verifiable with the documented secret."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    _setup(engine, receiver, 3)
    clock = VirtualClock(START)

    # 1. The server is not running: every attempt fails, nothing is lost, retries are scheduled.
    assert deliver_webhooks(engine, WS_ID, clock, http_post) == 9
    rows = _rows(engine)
    assert {(row.status, row.attempts) for row in rows} == {("pending", 1)}
    assert all(row.last_error and row.next_attempt_at == START + timedelta(seconds=30) for row in rows)
    assert deliver_webhooks(engine, WS_ID, clock, http_post) == 0  # backing off
    assert next_webhook_due(engine, WS_ID) == START + timedelta(seconds=30)

    # 2. It comes up but answers 503: still pending, the backoff doubles.
    receiver.status = 503
    receiver.start()
    clock.set(START + timedelta(seconds=30))
    assert deliver_webhooks(engine, WS_ID, clock, http_post) == 9
    assert len(receiver.requests) == 9 and not receiver.delivered()
    rows = _rows(engine)
    assert {(row.status, row.attempts, row.response_status) for row in rows} == {("pending", 2, 503)}
    assert {row.next_attempt_at for row in rows} == {START + timedelta(seconds=90)}
    clock.set(START + timedelta(seconds=60))
    assert deliver_webhooks(engine, WS_ID, clock, http_post) == 0

    # 3. Back for real: each webhook is delivered once, and never again.
    receiver.status = 200
    clock.set(START + timedelta(seconds=90))
    assert deliver_webhooks(engine, WS_ID, clock, http_post) == 9
    clock.set(START + timedelta(days=1))
    assert deliver_webhooks(engine, WS_ID, clock, http_post) == 0
    assert next_webhook_due(engine, WS_ID) is None
    rows = _rows(engine)
    assert {(row.status, row.attempts, row.response_status) for row in rows} == {("delivered", 3, 200)}
    delivered = receiver.delivered()
    assert sorted(item.headers[DELIVERY_HEADER] for item in delivered) == sorted(row.key for row in rows)
    assert all(_verifies(item) for item in receiver.requests)

    bodies = [json.loads(item.body) for item in delivered]
    grant = next(
        b for b in bodies if b["event"] == "membership.granted" and b["contact"]["email"] == "c2@x.test"
    )
    assert grant["workspace"] == WS_ID
    assert grant["data"] == {"action": "grant_membership", "value": {"membership": "academy", "level": "pro"}}
    custom = [item for item in delivered if item.path == "/custom"]
    assert len(custom) == 3
    assert all(json.loads(item.body)["data"] == {"source": "dripflow", "n": 1} for item in custom)
    # A tampered body no longer verifies.
    forged = Received("/hooks", delivered[0].headers, delivered[0].body.replace(b"academy", b"academi"), 200)
    assert not _verifies(forged)


def test_a2_a_worker_killed_mid_delivery_loses_nothing(
    engine: Engine, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A2: a delivery claimed by a worker that dies is taken again once its lease has run out."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    _setup(engine, receiver, 1)
    receiver.start()

    def dies(url: str, body: bytes, headers: Any) -> int:
        raise SystemExit("worker killed")

    clock = VirtualClock(START)
    with pytest.raises(SystemExit):
        deliver_webhooks(engine, WS_ID, clock, dies)
    assert {row.status for row in _rows(engine)} == {"sending"}
    assert deliver_webhooks(engine, WS_ID, clock, http_post) == 0  # another worker leaves it alone
    clock.set(START + LEASE)
    assert deliver_webhooks(engine, WS_ID, clock, http_post) == 3
    assert {row.status for row in _rows(engine)} == {"delivered"}
    assert len(receiver.delivered()) == 3


def test_a2_without_its_secret_nothing_is_sent_unsigned_and_nothing_is_lost(
    engine: Engine, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A2: a workspace naming a secret that is not set sends nothing (no unsigned webhooks); once the
    secret is set the queued webhooks go out, signed."""
    monkeypatch.delenv(SECRET_ENV, raising=False)
    _setup(engine, receiver, 1)
    receiver.start()
    clock = VirtualClock(START)
    assert deliver_webhooks(engine, WS_ID, clock, http_post) == 3
    assert receiver.requests == []
    assert all(SECRET_ENV in (row.last_error or "") and row.status == "pending" for row in _rows(engine))
    monkeypatch.setenv(SECRET_ENV, SECRET)
    clock.set(START + timedelta(minutes=1))
    assert deliver_webhooks(engine, WS_ID, clock, http_post) == 3
    assert len(receiver.delivered()) == 3 and all(_verifies(item) for item in receiver.requests)
