"""`dripflow worker`: the scheduler under the wall clock, for every workspace in the database.

Each pass claims due enrollments in batches (``scheduler.run_once``; on PostgreSQL with ``FOR
UPDATE SKIP LOCKED``, so any number of workers can share one database) and commits each batch
whole. Between passes it sleeps until the next due moment, at most ``poll`` seconds, so steps
that events make due are picked up promptly. A stop request (SIGTERM, Ctrl-C) is honoured between
batches: a batch is never cut in half.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from dripflow.core.clock import Clock
from dripflow.engine.scheduler import next_due, run_once
from dripflow.store.database import transaction
from dripflow.store.tables import Workspace

__all__ = ["WorkerStats", "run_worker"]


@dataclass
class WorkerStats:
    claimed: int = 0
    batches: int = 0
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
) -> WorkerStats:
    """Run due steps until stopped (or, with ``until_idle``, until nothing is due now)."""
    stop = stop or threading.Event()
    stats = WorkerStats()
    while not stop.is_set():
        ids = workspace_ids or _workspaces(engine)
        worked = False
        for workspace_id in ids:
            while not stop.is_set():
                claimed = run_once(engine, workspace_id, clock)
                if not claimed:
                    break
                worked = True
                stats.claimed += claimed
                stats.batches += 1
                stats.per_workspace[workspace_id] = stats.per_workspace.get(workspace_id, 0) + claimed
                if on_batch is not None:
                    on_batch(workspace_id, claimed)
        if worked:
            continue
        upcoming = [due for workspace_id in ids if (due := next_due(engine, workspace_id)) is not None]
        now = clock.now()
        if until_idle and not any(due <= now for due in upcoming):
            break
        stop.wait(_sleep_for(min(upcoming, default=None), now, poll))
    return stats


def _sleep_for(due: datetime | None, now: datetime, poll: float) -> float:
    if due is None:
        return poll
    return max(0.0, min(poll, (due - now) / timedelta(seconds=1)))


def _workspaces(engine: Engine) -> list[str]:
    with transaction(engine) as session:
        return list(session.scalars(select(Workspace.id).order_by(Workspace.id)))
