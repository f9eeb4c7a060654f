"""``GET /metrics`` over real HTTP (uvicorn on a loopback port), on SQLite and PostgreSQL.

The gauges are read from the database at scrape time (due backlog, queue lag, messages by status,
webhooks waiting or failed, step runs), the counters from this process's registry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from dripflow.api.app import create_app
from dripflow.api.routes import metrics
from dripflow.core.clock import VirtualClock
from dripflow.core.validate import load_workspace_text
from dripflow.engine import metrics as counters
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.engine.worker import run_worker
from dripflow.store.database import transaction
from dripflow.store.tables import WebhookDelivery
from dripflow.store.workspaces import apply_workspace
from tests.conftest import free_port

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
WORKSPACE = """\
workspace: {{id: {id}, name: Shop, timezone: UTC, default_send_time: "10:00", physical_address: "1 Main St"}}
mailboxes:
  - {{id: ann, from: "Ann <ann@shop.test>", default: true}}
lists: [news]
templates:
  hello: {{subject: "Hello", text: "Hi"}}
sequences:
  - id: drip
    start_when: [{{event: list.subscribed, list: news}}]
    steps:
      - {{id: one, type: email, template: hello}}
      - {{id: two, type: email, template: hello, after: {{days: 1}}}}
"""
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def server(engine: Engine) -> Iterator[str]:
    with transaction(engine) as session:
        for workspace_id in ("shop", "rival"):
            model = load_workspace_text(WORKSPACE.format(id=workspace_id), f"{workspace_id}.yaml")
            apply_workspace(session, model, now=NOW - timedelta(days=1), actor="test")
    app = create_app(engine, VirtualClock(NOW))
    app.include_router(metrics.router)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)


def _subscribe(engine: Engine, workspace_id: str, at: datetime, *emails: str) -> None:
    events = [
        InputEvent(n, at, {"type": "list.subscribed", "contact": email, "list": "news"})
        for n, email in enumerate(emails, start=1)
    ]
    assert ingest_events(engine, workspace_id, events, Path("events.jsonl")).applied == len(emails)


def _scrape(url: str, **headers: str) -> Samples:
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_gauges_follow_the_database(engine: Engine, server: str) -> None:
    samples = _scrape(server)
    for workspace in ("shop", "rival"):  # every series exists from the start, at zero
        for status in ("active", "queued", "blocked"):
            key = ("dripflow_due_enrollments", (("status", status), ("workspace", workspace)))
            assert samples[key] == 0
        assert samples[("dripflow_queue_lag_seconds", (("workspace", workspace),))] == 0
        assert samples[("dripflow_messages", (("status", "captured"), ("workspace", workspace)))] == 0

    _subscribe(engine, "shop", NOW - timedelta(hours=1), "a@x.test", "b@x.test", "c@x.test")
    _subscribe(engine, "rival", NOW - timedelta(minutes=10), "d@x.test")
    with transaction(engine) as session:
        for n, status in enumerate(("pending", "pending", "sending", "failed", "delivered")):
            session.add(
                WebhookDelivery(
                    workspace_id="shop",
                    key=f"hook:{n}",
                    url="https://hooks.test/in",
                    event="contact.created",
                    payload={},
                    status=status,
                    next_attempt_at=NOW,
                    created_at=NOW,
                )
            )

    samples = _scrape(server)
    assert _get(samples, "dripflow_due_enrollments", workspace="shop", status="active") == 3
    assert _get(samples, "dripflow_due_enrollments", workspace="rival", status="active") == 1
    assert _get(samples, "dripflow_queue_lag_seconds", workspace="shop") == 3600
    assert _get(samples, "dripflow_queue_lag_seconds", workspace="rival") == 600
    assert _get(samples, "dripflow_webhook_deliveries", workspace="shop", status="pending") == 2
    assert _get(samples, "dripflow_webhook_deliveries", workspace="shop", status="sending") == 1
    assert _get(samples, "dripflow_webhook_deliveries", workspace="shop", status="failed") == 1
    assert ("dripflow_webhook_deliveries", (("status", "delivered"), ("workspace", "shop"))) not in samples
    assert _get(samples, "dripflow_webhook_deliveries", workspace="rival", status="pending") == 0
    assert _get(samples, "dripflow_step_runs", workspace="shop") == 0

    # The scheduler runs shop's first steps: its backlog empties, three messages are captured;
    # the second steps are due tomorrow, so they are not backlog. Rival's is still waiting.
    run_worker(engine, VirtualClock(NOW), workspace_ids=["shop"], until_idle=True, post=_no_post)
    samples = _scrape(server)
    assert _get(samples, "dripflow_due_enrollments", workspace="shop", status="active") == 0
    assert _get(samples, "dripflow_queue_lag_seconds", workspace="shop") == 0
    assert _get(samples, "dripflow_messages", workspace="shop", status="captured") == 3
    assert _get(samples, "dripflow_messages", workspace="rival", status="captured") == 0
    assert _get(samples, "dripflow_step_runs", workspace="shop") == 3
    assert _get(samples, "dripflow_due_enrollments", workspace="rival", status="active") == 1
    assert _get(samples, "dripflow_queue_lag_seconds", workspace="rival") == 600


def _no_post(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    return 200


def test_counters_of_this_process(server: str) -> None:
    before = _scrape(server)
    counters.batch_run("shop", 500)
    counters.batch_run("shop", 0)  # an empty pass is not a batch
    counters.steps_executed("shop", 700)
    counters.steps_executed("shop", 2, outcome="skipped")
    counters.messages_sent("shop", 650)
    counters.webhooks_delivered("shop", 4)
    counters.failure("shop", "delivery", 3)
    after = _scrape(server)

    def grew(name: str, **labels: str) -> float:
        return _get(after, name, **labels) - _get(before, name, **labels)

    assert grew("dripflow_scheduler_batches_total", workspace="shop") == 1
    assert grew("dripflow_scheduler_enrollments_run_total", workspace="shop") == 500
    assert grew("dripflow_steps_executed_total", workspace="shop", outcome="executed") == 700
    assert grew("dripflow_steps_executed_total", workspace="shop", outcome="skipped") == 2
    assert grew("dripflow_messages_sent_total", workspace="shop") == 650
    assert grew("dripflow_webhooks_delivered_total", workspace="shop") == 4
    assert grew("dripflow_failures_total", workspace="shop", kind="delivery") == 3


def test_openmetrics_when_asked(server: str) -> None:
    response = httpx.get(
        f"{server}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=30
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_token_when_configured(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metrics.TOKEN_ENV, "s3cret")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        response = httpx.get(f"{server}/metrics", headers=headers, timeout=30)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    assert _get(_scrape(server, Authorization="Bearer s3cret"), "dripflow_step_runs", workspace="shop") == 0


def test_not_in_the_openapi_schema(server: str) -> None:
    """It is not part of the /v1 API: no key, not JSON, so the per-route API tests leave it out."""
    schema = httpx.get(f"{server}/openapi.json", timeout=30).json()
    assert "/metrics" not in schema["paths"]
