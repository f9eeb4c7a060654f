"""``GET /metrics``: Prometheus metrics (issue 6).

Two sources, one scrape:

* **The database, read at scrape time**, so the numbers are the same whichever process serves them
  and cover every worker sharing the database: the due backlog (enrollments due now, by status),
  the queue lag (how long the oldest due enrollment has been waiting), messages by status,
  webhook deliveries waiting or failed, and step occurrences recorded. All by ``workspace``.
* **This process's counters** (:mod:`dripflow.engine.metrics`): batches, enrollments run, steps,
  messages sent, webhooks, failures, incremented by the scheduler and delivery running here.

The series name workspaces and count their rows, so the endpoint is not public in a shared
deployment: set ``DRIPFLOW_METRICS_TOKEN`` and give Prometheus that token as a bearer token
(``authorization: {credentials: ...}`` in its scrape config). Without it ``/metrics`` answers
anyone who can reach the port, as is usual for a metrics endpoint on an internal network.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Iterator
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import Engine, func, select

from dripflow.api.deps import ClockDep, EngineDep
from dripflow.api.errors import ApiError
from dripflow.engine import metrics as counters
from dripflow.engine.scheduler import DUE_STATUSES
from dripflow.store.database import transaction
from dripflow.store.tables import Enrollment, Message, StepRun, WebhookDelivery, Workspace

__all__ = ["MESSAGE_STATUSES", "TOKEN_ENV", "WEBHOOK_STATUSES", "DatabaseCollector", "router"]

TOKEN_ENV = "DRIPFLOW_METRICS_TOKEN"
MESSAGE_STATUSES = ("captured", "queued", "sending", "sent", "bounced", "failed", "canceled")
WEBHOOK_STATUSES = ("pending", "sending", "failed")  # "delivered" is history, not a queue

router = APIRouter(tags=["metrics"])


class DatabaseCollector:
    """Gauges computed from the database when collected (a prometheus_client collector)."""

    def __init__(self, engine: Engine, now: datetime) -> None:
        self.engine = engine
        self.now = now

    def collect(self) -> Iterable[Metric]:
        now = self.now
        with transaction(self.engine) as session:
            workspaces = list(session.scalars(select(Workspace.id).order_by(Workspace.id)))
            due_rows = session.execute(
                select(Enrollment.workspace_id, Enrollment.status, func.count(), func.min(Enrollment.due_at))
                .where(Enrollment.status.in_(DUE_STATUSES), Enrollment.due_at <= now)
                .group_by(Enrollment.workspace_id, Enrollment.status)
            ).all()
            message_rows = session.execute(
                select(Message.workspace_id, Message.status, func.count()).group_by(
                    Message.workspace_id, Message.status
                )
            ).all()
            webhook_rows = session.execute(
                select(WebhookDelivery.workspace_id, WebhookDelivery.status, func.count())
                .where(WebhookDelivery.status.in_(WEBHOOK_STATUSES))
                .group_by(WebhookDelivery.workspace_id, WebhookDelivery.status)
            ).all()
            step_rows = session.execute(
                select(StepRun.workspace_id, func.count()).group_by(StepRun.workspace_id)
            ).all()

        due = GaugeMetricFamily(
            "dripflow_due_enrollments",
            "Enrollments due now and not yet run (the scheduler's backlog), by status.",
            labels=["workspace", "status"],
        )
        lag = GaugeMetricFamily(
            "dripflow_queue_lag_seconds",
            "Seconds since the oldest enrollment due now became due (0 when nothing is due).",
            labels=["workspace"],
        )
        due_counts = {(ws, status): int(count) for ws, status, count, _oldest in due_rows}
        oldest: dict[str, datetime] = {}
        for ws, _status, _count, first in due_rows:
            if first is not None and (ws not in oldest or first < oldest[ws]):
                oldest[ws] = first
        for ws in workspaces:
            for status in DUE_STATUSES:
                due.add_metric([ws, status], due_counts.get((ws, status), 0))
            waited = (now - oldest[ws]).total_seconds() if ws in oldest else 0.0
            lag.add_metric([ws], max(0.0, waited))
        yield due
        yield lag
        yield _by_status(
            "dripflow_messages",
            "Messages in the outbox, by status.",
            workspaces,
            MESSAGE_STATUSES,
            message_rows,
        )
        yield _by_status(
            "dripflow_webhook_deliveries",
            "Outgoing webhooks waiting (pending, sending) or given up on (failed).",
            workspaces,
            WEBHOOK_STATUSES,
            webhook_rows,
        )
        steps = GaugeMetricFamily(
            "dripflow_step_runs",
            "Step occurrences recorded in the database, by every process (executed or skipped).",
            labels=["workspace"],
        )
        step_counts = {ws: int(count) for ws, count in step_rows}
        for ws in workspaces:
            steps.add_metric([ws], step_counts.get(ws, 0))
        yield steps


def _by_status(
    name: str,
    documentation: str,
    workspaces: list[str],
    known: tuple[str, ...],
    rows: Iterable[tuple[str, str, int]],
) -> GaugeMetricFamily:
    counts = {(ws, status): int(count) for ws, status, count in rows}
    statuses = list(known) + sorted({status for _ws, status in counts} - set(known))
    gauge = GaugeMetricFamily(name, documentation, labels=["workspace", "status"])
    for ws in workspaces:
        for status in statuses:
            gauge.add_metric([ws, status], counts.get((ws, status), 0))
    return gauge


class _Scrape:
    """Everything one scrape exposes: the database's gauges, then this process's counters."""

    def __init__(self, database: DatabaseCollector) -> None:
        self.database = database

    def collect(self) -> Iterator[Metric]:
        yield from self.database.collect()
        yield from counters.REGISTRY.collect()


def _check_token(request: Request) -> None:
    expected = os.environ.get(TOKEN_ENV)
    if not expected:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise ApiError(
            401, "unauthorized", f"send the metrics token ({TOKEN_ENV}) as `Authorization: Bearer`"
        )


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, engine: EngineDep, clock: ClockDep) -> Response:
    """Prometheus text exposition (or OpenMetrics, if the scraper asks for it)."""
    _check_token(request)
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    body = encoder(_Scrape(DatabaseCollector(engine, clock.now())))
    return Response(content=body, media_type=content_type)
