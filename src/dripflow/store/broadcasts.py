"""Broadcasts made through the API (``api_broadcasts``) next to the workspace file's (SPEC §8 B1–B4).

The sender asks :func:`live_broadcasts` for everything it may have to send: the file's broadcasts
and the API's scheduled ones whose run has not finished. One id is one broadcast: the API refuses
an id the file uses and a file that takes an API broadcast's id; should a file applied some other
way (``dripflow apply``) still do so, the file's broadcast is the one sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from dripflow.core.model import Broadcast
from dripflow.core.model import Workspace as WorkspaceDef
from dripflow.store.tables import ApiBroadcast, BroadcastRun

__all__ = ["BroadcastState", "api_broadcast", "broadcast_states", "live_broadcasts"]

_log = logging.getLogger("dripflow.broadcasts")


_SCHEDULED = (
    select(ApiBroadcast.id, ApiBroadcast.definition)
    .outerjoin(
        BroadcastRun,
        (BroadcastRun.workspace_id == ApiBroadcast.workspace_id)
        & (BroadcastRun.broadcast_id == ApiBroadcast.id),
    )
    .where(
        ApiBroadcast.workspace_id == bindparam("workspace_id"),
        ApiBroadcast.status == "scheduled",
        or_(BroadcastRun.status.is_(None), BroadcastRun.status != "finished"),
    )
    .order_by(ApiBroadcast.id)
)


def live_broadcasts(session: Session, workspace: WorkspaceDef) -> tuple[Broadcast, ...]:
    """Every broadcast the sender may have a wave of: the file's, then the API's scheduled ones."""
    file_ids = {item.id for item in workspace.broadcasts}
    # Asked on every scheduler pass (and every simulated moment): a statement built once, run as
    # plain rows on the connection after the session's own pending changes are written.
    session.flush()
    rows = session.connection().execute(_SCHEDULED, {"workspace_id": workspace.workspace.id}).all()
    found: list[Broadcast] = []
    for broadcast_id, definition in rows:
        if broadcast_id in file_ids:
            continue  # the file's broadcast of that id wins (see the module docstring)
        try:
            found.append(Broadcast.model_validate(definition))
        except ValidationError:  # checked when scheduled: only a hand-edited row can get here
            _log.warning("broadcast %s of %s cannot be read; not sent", broadcast_id, workspace.workspace.id)
    return (*workspace.broadcasts, *found)


def api_broadcast(session: Session, workspace_id: str, broadcast_id: str) -> ApiBroadcast | None:
    return session.get(ApiBroadcast, (workspace_id, broadcast_id))


@dataclass(frozen=True)
class BroadcastState:
    """One broadcast as a user sees it: where it comes from, its definition and how far it got."""

    id: str
    source: str  # "workspace" (the file) or "api"
    status: str  # draft · scheduled · sending · sent · canceled
    definition: dict[str, object]
    queued: int
    skipped: int
    created_at: datetime | None
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    canceled_at: datetime | None


def broadcast_states(session: Session, workspace: WorkspaceDef) -> list[BroadcastState]:
    """The file's broadcasts, then the API's, each with its status (from its run when it has one)."""
    workspace_id = workspace.workspace.id
    runs = {
        run.broadcast_id: run
        for run in session.scalars(select(BroadcastRun).where(BroadcastRun.workspace_id == workspace_id))
    }
    states = [
        _state(item.id, "workspace", "scheduled", item.model_dump(mode="json"), runs.get(item.id), None)
        for item in workspace.broadcasts
    ]
    file_ids = {item.id for item in workspace.broadcasts}
    for row in session.scalars(
        select(ApiBroadcast).where(ApiBroadcast.workspace_id == workspace_id).order_by(ApiBroadcast.id)
    ):
        if row.id not in file_ids:
            states.append(_state(row.id, "api", row.status, dict(row.definition), runs.get(row.id), row))
    return states


def _state(
    broadcast_id: str,
    source: str,
    decided: str,
    definition: dict[str, object],
    run: BroadcastRun | None,
    row: ApiBroadcast | None,
) -> BroadcastState:
    status = decided
    if decided == "scheduled" and run is not None and run.started_at is not None:
        status = "sent" if run.status == "finished" else "sending"
    return BroadcastState(
        id=broadcast_id,
        source=source,
        status=status,
        definition=definition,
        queued=run.queued if run is not None else 0,
        skipped=run.skipped if run is not None else 0,
        created_at=row.created_at if row is not None else None,
        scheduled_at=row.scheduled_at if row is not None else None,
        started_at=run.started_at if run is not None else None,
        finished_at=run.finished_at if run is not None else None,
        canceled_at=row.canceled_at if row is not None else None,
    )
