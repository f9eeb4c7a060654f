"""Counters of what this process's scheduler and delivery did, for Prometheus (issue 6).

The worker calls the small functions below after each piece of work has committed; ``/metrics``
(:mod:`dripflow.api.routes.metrics`) exposes :data:`REGISTRY` next to the gauges it reads from the
database at scrape time. Counters live in the process that increments them: ``dripflow serve``
runs scheduler, delivery and API in one process, so its ``/metrics`` shows them; a separate
``dripflow worker`` counts its own (the database-derived series are the same whichever process
serves them). No dependency on FastAPI: the engine imports this module, never the API.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = [
    "BATCHES",
    "ENROLLMENTS_RUN",
    "FAILURES",
    "MESSAGES_SENT",
    "REGISTRY",
    "STEPS_EXECUTED",
    "WEBHOOKS_DELIVERED",
    "batch_run",
    "failure",
    "messages_sent",
    "steps_executed",
    "webhooks_delivered",
]

# A registry of our own rather than prometheus_client's global one: several apps (tests) can
# expose it without double registration, and nothing else in the process leaks into it.
REGISTRY = CollectorRegistry(auto_describe=True)

BATCHES = Counter(
    "dripflow_scheduler_batches",
    "Batches of due enrollments claimed and committed by this process.",
    ["workspace"],
    registry=REGISTRY,
)
ENROLLMENTS_RUN = Counter(
    "dripflow_scheduler_enrollments_run",
    "Due enrollments claimed and run by this process, in committed batches.",
    ["workspace"],
    registry=REGISTRY,
)
STEPS_EXECUTED = Counter(
    "dripflow_steps_executed",
    "Step occurrences run by this process, by outcome (executed or skipped).",
    ["workspace", "outcome"],
    registry=REGISTRY,
)
MESSAGES_SENT = Counter(
    "dripflow_messages_sent",
    "Messages handed to the SMTP server by this process.",
    ["workspace"],
    registry=REGISTRY,
)
WEBHOOKS_DELIVERED = Counter(
    "dripflow_webhooks_delivered",
    "Outgoing webhooks attempted by this process.",
    ["workspace"],
    registry=REGISTRY,
)
FAILURES = Counter(
    "dripflow_failures",
    "Failures seen by this process, by kind (batch, delivery, webhook, ...).",
    ["workspace", "kind"],
    registry=REGISTRY,
)


def batch_run(workspace_id: str, enrollments: int) -> None:
    """A scheduler batch of ``enrollments`` due enrollments committed."""
    if enrollments <= 0:
        return
    BATCHES.labels(workspace_id).inc()
    ENROLLMENTS_RUN.labels(workspace_id).inc(enrollments)


def steps_executed(workspace_id: str, count: int = 1, outcome: str = "executed") -> None:
    if count > 0:
        STEPS_EXECUTED.labels(workspace_id, outcome).inc(count)


def messages_sent(workspace_id: str, count: int = 1) -> None:
    if count > 0:
        MESSAGES_SENT.labels(workspace_id).inc(count)


def webhooks_delivered(workspace_id: str, count: int = 1) -> None:
    if count > 0:
        WEBHOOKS_DELIVERED.labels(workspace_id).inc(count)


def failure(workspace_id: str, kind: str, count: int = 1) -> None:
    if count > 0:
        FAILURES.labels(workspace_id, kind).inc(count)
