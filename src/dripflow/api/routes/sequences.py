"""Sequences (SPEC §5): ``GET /v1/sequences`` and ``/{id}``, ``PUT /v1/sequences/{id}`` (create or
replace, as ``admin.sequence.update``: S7, T9), ``/pause`` and ``/resume`` (S5), ``/archive`` and
``/versions``. Enrollments are in :mod:`dripflow.api.routes.enrollments`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dripflow.api.deps import ClockDep, EngineDep, admin, has_nul, reader, refuse_nul
from dripflow.api.errors import ApiError, error_responses
from dripflow.api.routes.shared import actor, invalid
from dripflow.api.schemas import SequenceDetail, SequenceVersionOut, SequenceWritten
from dripflow.core.states import Status
from dripflow.core.validate import WorkspaceInvalid
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.engine.operator import archive_sequence, engine_ctx, put_sequence
from dripflow.store.database import transaction
from dripflow.store.tables import Enrollment, Sequence
from dripflow.store.workspaces import current_versions, sequence_versions

router = APIRouter(
    prefix="/v1",
    tags=["sequences"],
    responses=error_responses(401, 403, 422),
    dependencies=[Depends(refuse_nul)],
)

STATUSES: tuple[str, ...] = Status.__args__  # type: ignore[attr-defined]  # every status of SPEC §6

_EXAMPLE = {
    "kind": "step",
    "status": "active",
    "start_when": [{"event": "list.subscribed", "list": "news"}],
    "steps": [
        {"id": "one", "type": "email", "template": "hello"},
        {"id": "two", "type": "email", "template": "hello", "after": {"days": 1}},
    ],
}


@router.get("/sequences", response_model=list[SequenceDetail])
def list_sequences(credential: reader, engine: EngineDep) -> list[SequenceDetail]:
    """Every sequence, archived ones included, with its live definition and enrollment counts."""
    with transaction(engine) as session:
        return _details(session, credential.workspace_id)


@router.get("/sequences/{sequence_id}", response_model=SequenceDetail, responses=error_responses(404))
def get_sequence(sequence_id: str, credential: reader, engine: EngineDep) -> SequenceDetail:
    with transaction(engine) as session:
        return _detail(session, credential.workspace_id, sequence_id)


@router.put(
    "/sequences/{sequence_id}",
    response_model=SequenceWritten,
    responses={
        201: {"model": SequenceWritten, "description": "The sequence was created."},
        **error_responses(400),
    },
)
def put(
    sequence_id: str,
    credential: admin,
    engine: EngineDep,
    clock: ClockDep,
    response: Response,
    body: dict[str, Any] = Body(  # noqa: B008 - FastAPI's way to take a free-form JSON body
        ...,
        description="The sequence as in the workspace file (SPEC §2); `id` may be left out.",
        examples=[_EXAMPLE],
    ),
) -> SequenceWritten:
    """Create the sequence, or replace it live as `admin.sequence.update` does: contacts inside
    keep their place by step id and never get a step twice (S7); finished contacts go on to
    appended steps (T9). The same definition again writes nothing (`changed: false`). An invalid
    one is refused with the validator's problems, each `{key, message}`."""
    if has_nul(body):
        raise ApiError(422, "invalid_request", "the body holds a NUL character (U+0000); remove it")
    if body.get("id", sequence_id) != sequence_id:
        raise ApiError(
            422, "invalid_sequence", f"the body's id {body.get('id')!r} is not the path's {sequence_id!r}"
        )
    with transaction(engine) as session:
        ctx = engine_ctx(session, credential.workspace_id, clock)
        try:
            change = put_sequence(ctx, {**body, "id": sequence_id}, actor(credential))
        except WorkspaceInvalid as exc:
            raise invalid("invalid_sequence", "the sequence", exc) from None
        detail = _detail(session, credential.workspace_id, sequence_id)
    if change.created:
        response.status_code = 201
    return SequenceWritten(**detail.model_dump(), changed=change.changed)


@router.post(
    "/sequences/{sequence_id}/archive", response_model=SequenceDetail, responses=error_responses(404)
)
def archive(sequence_id: str, credential: admin, engine: EngineDep, clock: ClockDep) -> SequenceDetail:
    """No new enrollments (`not_enrolled: sequence_archived`); contacts already inside go on, as
    when a sequence is removed from the workspace file. Archiving again changes nothing; a `PUT`
    with `status: active` brings it back."""
    with transaction(engine) as session:
        _head(session, credential.workspace_id, sequence_id)
        archive_sequence(engine_ctx(session, credential.workspace_id, clock), sequence_id, actor(credential))
        return _detail(session, credential.workspace_id, sequence_id)


@router.get(
    "/sequences/{sequence_id}/versions",
    response_model=list[SequenceVersionOut],
    responses=error_responses(404),
)
def versions(sequence_id: str, credential: reader, engine: EngineDep) -> list[SequenceVersionOut]:
    """Every definition the sequence has had, oldest first; versions are never deleted."""
    with transaction(engine) as session:
        head = _head(session, credential.workspace_id, sequence_id)
        return [
            SequenceVersionOut(
                version=row.version,
                current=row.version == head.current_version,
                created_at=row.created_at,
                definition=row.definition,
            )
            for row in sequence_versions(session, credential.workspace_id, sequence_id)
        ]


@router.post("/sequences/{sequence_id}/pause", response_model=SequenceDetail, responses=error_responses(404))
def pause(sequence_id: str, credential: admin, engine: EngineDep, clock: ClockDep) -> SequenceDetail:
    """S5: the sequence executes nothing; its enrollments show `paused`."""
    return _command(sequence_id, "admin.sequence.pause", credential.workspace_id, engine, clock)


@router.post("/sequences/{sequence_id}/resume", response_model=SequenceDetail, responses=error_responses(404))
def resume(sequence_id: str, credential: admin, engine: EngineDep, clock: ClockDep) -> SequenceDetail:
    """S5: `continue` keeps due times (overdue fire at once); `restart` restarts the current delay."""
    return _command(sequence_id, "admin.sequence.resume", credential.workspace_id, engine, clock)


def _command(
    sequence_id: str, kind: str, workspace_id: str, engine: EngineDep, clock: ClockDep
) -> SequenceDetail:
    with transaction(engine) as session:
        _head(session, workspace_id, sequence_id)
    event = {"type": kind, "sequence": sequence_id}
    ingest_events(engine, workspace_id, [InputEvent(1, clock.now(), event)], Path("request"))
    with transaction(engine) as session:
        return _detail(session, workspace_id, sequence_id)


def _head(session: Session, workspace_id: str, sequence_id: str) -> Sequence:
    head = session.get(Sequence, (workspace_id, sequence_id))
    if head is None:
        raise ApiError(404, "not_found", f"no sequence {sequence_id!r} in this workspace")
    return head


def _counts(session: Session, workspace_id: str, sequence_id: str | None) -> dict[str, dict[str, int]]:
    """Enrollments per sequence and status (every status present, 0 when none)."""
    stmt = (
        select(Enrollment.sequence_id, Enrollment.status, func.count())
        .where(Enrollment.workspace_id == workspace_id)
        .group_by(Enrollment.sequence_id, Enrollment.status)
    )
    if sequence_id is not None:
        stmt = stmt.where(Enrollment.sequence_id == sequence_id)
    found: dict[str, dict[str, int]] = {}
    for sid, status, count in session.execute(stmt):
        found.setdefault(sid, dict.fromkeys(STATUSES, 0))[status] = int(count)
    return found


def _details(session: Session, workspace_id: str, only: str | None = None) -> list[SequenceDetail]:
    versions = current_versions(session, workspace_id)
    stmt = select(Sequence).where(Sequence.workspace_id == workspace_id).order_by(Sequence.id)
    if only is not None:
        stmt = stmt.where(Sequence.id == only)
    counts = _counts(session, workspace_id, only)
    details = []
    for head in session.scalars(stmt):
        version = versions.get(head.id)
        if version is None:
            continue
        definition = version.definition
        details.append(
            SequenceDetail(
                id=head.id,
                status=head.status,
                version=head.current_version,
                kind=str(definition.get("kind", "step")),
                steps=[str(step["id"]) for step in definition.get("steps", [])],
                definition=definition,
                enrollments=counts.get(head.id, dict.fromkeys(STATUSES, 0)),
                updated_at=head.updated_at,
            )
        )
    return details


def _detail(session: Session, workspace_id: str, sequence_id: str) -> SequenceDetail:
    _head(session, workspace_id, sequence_id)
    found = _details(session, workspace_id, sequence_id)
    if not found:
        raise ApiError(404, "not_found", f"no sequence {sequence_id!r} in this workspace")
    return found[0]
