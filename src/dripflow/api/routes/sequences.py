"""``GET /v1/sequences``, ``POST /v1/sequences/{id}/pause`` and ``/resume`` (S5),
``GET /v1/enrollments`` with cursor pagination."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select

from dripflow.api.deps import ClockDep, EngineDep, admin, reader, refuse_nul
from dripflow.api.errors import ApiError, error_responses
from dripflow.api.schemas import EnrollmentOut, enrollment_out
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.store.database import transaction
from dripflow.store.tables import Enrollment, Sequence
from dripflow.store.workspaces import current_versions

router = APIRouter(
    prefix="/v1",
    tags=["sequences"],
    responses=error_responses(401, 403, 422),
    dependencies=[Depends(refuse_nul)],
)


class SequenceOut(BaseModel):
    id: str
    status: str
    version: int
    kind: str
    steps: list[str]


class EnrollmentPage(BaseModel):
    items: list[EnrollmentOut]
    next_cursor: str | None


@router.get("/sequences", response_model=list[SequenceOut])
def list_sequences(credential: reader, engine: EngineDep) -> list[SequenceOut]:
    return _sequences(engine, credential.workspace_id)


@router.post("/sequences/{sequence_id}/pause", response_model=SequenceOut, responses=error_responses(404))
def pause(sequence_id: str, credential: admin, engine: EngineDep, clock: ClockDep) -> SequenceOut:
    """S5: the sequence executes nothing; its enrollments show `paused`."""
    return _command(sequence_id, "admin.sequence.pause", credential.workspace_id, engine, clock)


@router.post("/sequences/{sequence_id}/resume", response_model=SequenceOut, responses=error_responses(404))
def resume(sequence_id: str, credential: admin, engine: EngineDep, clock: ClockDep) -> SequenceOut:
    """S5: `continue` keeps due times (overdue fire at once); `restart` restarts the current delay."""
    return _command(sequence_id, "admin.sequence.resume", credential.workspace_id, engine, clock)


def _command(
    sequence_id: str, kind: str, workspace_id: str, engine: EngineDep, clock: ClockDep
) -> SequenceOut:
    with transaction(engine) as session:
        if session.get(Sequence, (workspace_id, sequence_id)) is None:
            raise ApiError(404, "not_found", f"no sequence {sequence_id!r} in this workspace")
    event = {"type": kind, "sequence": sequence_id}
    ingest_events(engine, workspace_id, [InputEvent(1, clock.now(), event)], Path("request"))
    found = [item for item in _sequences(engine, workspace_id) if item.id == sequence_id]
    return found[0]


def _sequences(engine: EngineDep, workspace_id: str) -> list[SequenceOut]:
    with transaction(engine) as session:
        versions = current_versions(session, workspace_id)
        heads = list(
            session.scalars(
                select(Sequence).where(Sequence.workspace_id == workspace_id).order_by(Sequence.id)
            )
        )
        return [
            SequenceOut(
                id=head.id,
                status=head.status,
                version=head.current_version,
                kind=str(versions[head.id].definition.get("kind", "step")),
                steps=[str(step["id"]) for step in versions[head.id].definition.get("steps", [])],
            )
            for head in heads
            if head.id in versions
        ]


@router.get("/enrollments", response_model=EnrollmentPage)
def list_enrollments(
    credential: reader,
    engine: EngineDep,
    sequence: str | None = None,
    status: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = None,
) -> EnrollmentPage:
    """Enrollments in id order; pass `next_cursor` back as `cursor` for the next page."""
    after = 0
    if cursor is not None:
        if not cursor.isdigit():
            raise ApiError(422, "invalid_request", "`cursor` must be a `next_cursor` from an earlier page")
        after = int(cursor)
    stmt = (
        select(Enrollment)
        .where(Enrollment.workspace_id == credential.workspace_id, Enrollment.id > after)
        .order_by(Enrollment.id)
        .limit(limit + 1)
    )
    if sequence is not None:
        stmt = stmt.where(Enrollment.sequence_id == sequence)
    if status is not None:
        stmt = stmt.where(Enrollment.status == status)
    with transaction(engine) as session:
        rows = list(session.scalars(stmt))
        items = [enrollment_out(row) for row in rows[:limit]]
    return EnrollmentPage(items=items, next_cursor=str(items[-1].id) if len(rows) > limit else None)
