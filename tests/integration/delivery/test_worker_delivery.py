"""The worker end to end (SPEC §10): an event enrolls a contact, the worker runs the step and
delivers the email to a real SMTP server named by DRIPFLOW_SMTP_URL; a second run sends nothing
again (D3)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from dripflow.core.clock import VirtualClock
from dripflow.core.validate import load_workspace_text
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.engine.worker import run_worker
from dripflow.store.database import transaction
from dripflow.store.tables import Message
from dripflow.store.workspaces import apply_workspace
from tests.integration.delivery.conftest import SmtpServer

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WORKSPACE = """\
workspace: {id: shop, name: Shop, timezone: UTC, default_send_time: "10:00", physical_address: "1 Main St",
            base_url: "https://mail.shop.test"}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
lists: [news]
templates:
  hello: {subject: "Hello {{ contact.first_name }}", text: "Hi {{ contact.first_name }}"}
sequences:
  - id: drip
    start_when: [{event: list.subscribed, list: news}]
    steps:
      - {id: one, type: email, template: hello}
"""


def test_worker_sends_due_email_through_smtp_once(
    engine: Engine, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIPFLOW_SMTP_URL", f"smtp://{smtp_server.host}:{smtp_server.port}")
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(WORKSPACE, "shop.yaml"), now=NOW, actor="test")
    event = {"type": "list.subscribed", "contact": {"email": "cy@x.test", "first_name": "Cy"}, "list": "news"}
    ingest_events(engine, "shop", [InputEvent(1, NOW, event)], Path("events.jsonl"))
    stats = run_worker(engine, VirtualClock(NOW), until_idle=True)
    assert (stats.claimed, stats.delivered) == (1, 1)
    [received] = smtp_server.received
    message = received.message
    assert message["Subject"] == "Hello Cy" and message["To"] == "cy@x.test"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # D1
    assert message["List-Unsubscribe"].startswith("<https://mail.shop.test/t/u/")
    with transaction(engine) as session:
        assert [(m.status, m.sent_at) for m in session.scalars(select(Message))] == [("sent", NOW)]
    again = run_worker(engine, VirtualClock(NOW), until_idle=True)
    assert (again.claimed, again.delivered, len(smtp_server.received)) == (0, 0, 1)
