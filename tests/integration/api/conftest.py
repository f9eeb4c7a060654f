"""The API served for real: uvicorn on a loopback port in a thread, on each store (SQLite, PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from dripflow.api.app import create_app
from dripflow.core.clock import VirtualClock
from dripflow.core.validate import load_workspace_text
from dripflow.store.apikeys import create_key
from dripflow.store.database import transaction
from dripflow.store.workspaces import apply_workspace
from tests.conftest import free_port

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday

WORKSPACE = """\
workspace: {{id: {id}, name: Shop, timezone: UTC, default_send_time: "10:00", physical_address: "1 Main St"}}
mailboxes:
  - {{id: ann, from: "Ann <ann@shop.test>", default: true}}
lists: [news]
templates:
  hello: {{subject: "Hello {{{{ contact.first_name }}}}", text: "Hi"}}
sequences:
  - id: drip
    start_when: [{{event: list.subscribed, list: news}}]
    steps:
      - {{id: one, type: email, template: hello}}
      - {{id: two, type: email, template: hello, after: {{days: 1}}}}
"""


@dataclass
class Api:
    url: str
    clock: VirtualClock
    engine: Engine
    keys: dict[str, str]  # "admin", "write", "read", "other" (admin of another workspace)
    app: FastAPI  # the served application (its ``state`` takes injected clients, such as providers')

    def client(self, role: str | None = "admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def api(engine: Engine) -> Iterator[Api]:
    keys: dict[str, str] = {}
    with transaction(engine) as session:
        for workspace_id in ("shop", "rival"):
            model = load_workspace_text(WORKSPACE.format(id=workspace_id), f"{workspace_id}.yaml")
            apply_workspace(session, model, now=NOW, actor="test")
        for role in ("admin", "write", "read"):
            keys[role] = create_key(session, "shop", role, NOW)  # type: ignore[arg-type]
        keys["other"] = create_key(session, "rival", "admin", NOW)
    clock = VirtualClock(NOW)
    port = free_port()
    app = create_app(engine, clock)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.02)
    yield Api(f"http://127.0.0.1:{port}", clock, engine, keys, app)
    server.should_exit = True
    thread.join(timeout=10)
