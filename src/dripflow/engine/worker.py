"""`dripflow worker`: the scheduler, broadcasts, webhooks and delivery (email by SMTP, SMS by the
workspace's gateway, docs/sms.md) under the wall clock, for every workspace in the database.

Each pass claims due enrollments in batches (``scheduler.run_once``; on PostgreSQL with ``FOR
UPDATE SKIP LOCKED``, so any number of workers can share one database) and commits each batch
whole. Between passes it sleeps until the next due moment, at most ``poll`` seconds, so steps
that events make due are picked up promptly. A stop request (SIGTERM, Ctrl-C) is honoured between
batches: a batch is never cut in half, and delivery finishes the batch it is sending.

What it does is logged on the ``dripflow.worker`` logger (``dripflow serve`` writes it as one JSON
object per line): one ``scheduler.pass`` record per workspace pass that found work, with its counts;
one ``delivery.sms.unsigned`` error per pass while SMS are due and ``delivery.sms.secret_env``
names an unset variable (they stay queued: nothing is sent unsigned).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from dripflow.core.clock import Clock
from dripflow.delivery.outbox import Channel, deliver_pending, next_delivery_due
from dripflow.delivery.sms import MissingSecret, sms_transport_for
from dripflow.delivery.transport import Transport, transport_for
from dripflow.engine import metrics
from dripflow.engine.broadcasts import next_broadcast_due, send_due_broadcasts
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.scheduler import due_in, run_once
from dripflow.engine.webhooks import Post, deliver_webhooks, http_post, next_webhook_due
from dripflow.store.database import transaction
from dripflow.store.tables import Workspace

__all__ = ["WorkerStats", "run_worker"]

log = logging.getLogger("dripflow.worker")


@dataclass
class WorkerStats:
    claimed: int = 0
    batches: int = 0
    broadcast: int = 0
    webhooks: int = 0
    delivered: int = 0
    """Messages claimed for delivery, all channels (``sms`` of them SMS)."""
    sms: int = 0
    per_workspace: dict[str, int] = field(default_factory=dict)


def run_worker(
    engine: Engine,
    clock: Clock,
    *,
    workspace_ids: list[str] | None = None,
    until_idle: bool = False,
    poll: float = 1.0,
    stop: threading.Event | None = None,
    on_batch: Callable[[str, int], None] | None = None,
    post: Post = http_post,
) -> WorkerStats:
    """Run due steps, broadcasts and webhooks until stopped (or, with ``until_idle``, until
    nothing is due now)."""
    stop = stop or threading.Event()
    stats = WorkerStats()
    # The channels each workspace delivered on its last pass: only their messages wake the worker
    # (an SMS waiting for its gateway's secret must not keep an idle worker busy).
    deliverable: dict[str, tuple[Channel, ...]] = {}
    while not stop.is_set():
        ids = workspace_ids or _workspaces(engine)
        worked = False
        for workspace_id in ids:
            steps = batches = 0
            while not stop.is_set():
                claimed = run_once(engine, workspace_id, clock)
                if not claimed:
                    break
                worked = True
                steps += claimed
                batches += 1
                stats.claimed += claimed
                stats.batches += 1
                stats.per_workspace[workspace_id] = stats.per_workspace.get(workspace_id, 0) + claimed
                metrics.batch_run(workspace_id, claimed)
                if on_batch is not None:
                    on_batch(workspace_id, claimed)
            if stop.is_set():
                _log_pass(workspace_id, steps, batches, 0, 0, 0)
                break
            broadcast = _broadcasts(engine, workspace_id, clock)
            stats.broadcast += broadcast
            webhooks = deliver_webhooks(engine, workspace_id, clock, post)
            stats.webhooks += webhooks
            metrics.webhooks_delivered(workspace_id, webhooks)
            delivered = 0
            transports = _transports(engine, workspace_id, clock)
            deliverable[workspace_id] = tuple(channel for channel, _transport in transports)
            for channel, transport in transports:
                if stop.is_set():
                    break
                claimed = deliver_pending(engine, workspace_id, clock, transport, stop=stop, channel=channel)
                delivered += claimed
                if channel == "sms":
                    stats.sms += claimed
            stats.delivered += delivered
            metrics.messages_sent(workspace_id, delivered)
            _log_pass(workspace_id, steps, batches, broadcast, webhooks, delivered)
        if worked:
            continue
        now = clock.now()
        upcoming = [
            due
            for workspace_id in ids
            for due in _upcoming(engine, workspace_id, deliverable.get(workspace_id, ()))
            if due is not None
        ]
        if until_idle and not any(due <= now for due in upcoming):
            break
        stop.wait(_sleep_for(min(upcoming, default=None), now, poll))
    return stats


def _log_pass(
    workspace_id: str, steps: int, batches: int, broadcast: int, webhooks: int, delivered: int
) -> None:
    if steps or broadcast or webhooks or delivered:
        counts = {
            "steps": steps,
            "batches": batches,
            "broadcast": broadcast,
            "webhooks": webhooks,
            "delivery_claimed": delivered,
        }
        log.info(
            "scheduler pass", extra={"event": "scheduler.pass", "workspace": workspace_id, "counts": counts}
        )


def _broadcasts(engine: Engine, workspace_id: str, clock: Clock) -> int:
    with transaction(engine) as session:
        if next_broadcast_due(session, workspace_id) is None:
            return 0
        return send_due_broadcasts(Ctx(session, workspace_id, load_rules(session, workspace_id), clock))


def _transports(engine: Engine, workspace_id: str, clock: Clock) -> list[tuple[Channel, Transport]]:
    """The workspace's transports, by channel: SMTP for email (DRIPFLOW_SMTP_URL or
    delivery.smtp), the gateway for SMS (delivery.sms). A channel without one sends nothing: its
    messages were captured, or (an SMS gateway whose secret is not set) wait, queued; that is
    logged as an error while some are due (a workspace that sends no SMS now stays quiet)."""
    with transaction(engine) as session:
        delivery = load_rules(session, workspace_id).workspace.delivery
    found: list[tuple[Channel, Transport]] = []
    smtp = transport_for(delivery)
    if smtp is not None:
        found.append(("email", smtp))
    try:
        sms = sms_transport_for(delivery)
    except MissingSecret as exc:  # as the A2 webhooks: nothing unsigned, nothing lost
        due = next_delivery_due(engine, workspace_id, ("sms",))
        if due is not None and due <= clock.now():
            log.error(
                "SMS not sent: %s",
                exc,
                extra={"event": "delivery.sms.unsigned", "workspace": workspace_id},
            )
    else:
        if sms is not None:
            found.append(("sms", sms))
    return found


def _upcoming(engine: Engine, workspace_id: str, channels: tuple[Channel, ...]) -> list[datetime | None]:
    with transaction(engine) as session:
        steps, broadcasts = due_in(session, workspace_id), next_broadcast_due(session, workspace_id)
    return [
        steps,
        broadcasts,
        next_webhook_due(engine, workspace_id),
        next_delivery_due(engine, workspace_id, channels),
    ]


_BUSY_WAIT = 0.05  # something is due but another worker holds it: look again soon, not at once


def _sleep_for(due: datetime | None, now: datetime, poll: float) -> float:
    if due is None:
        return poll
    return max(min(_BUSY_WAIT, poll), min(poll, (due - now) / timedelta(seconds=1)))


def _workspaces(engine: Engine) -> list[str]:
    with transaction(engine) as session:
        return list(session.scalars(select(Workspace.id).order_by(Workspace.id)))
