"""Enrollments (SPEC §6): ``GET /v1/enrollments`` (cursor pagination) and ``/{id}``,
``GET /v1/enrollments/refusals`` (the ``not_enrolled`` records), ``POST /v1/enrollments``
(``admin.enroll``), ``POST /v1/enrollments/{id}/unenroll`` (``admin.unenroll``) and ``/retry`` (S11).

Refusals have their own route rather than rows in the enrollment list: a refusal is not an
enrollment (no id, no status, nothing due), and a list of one kind pages and filters simply.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from dripflow.api.deps import ClockDep, EngineDep, has_nul, reader, refuse_nul, writer
from dripflow.api.errors import ApiError, error_responses
from dripflow.api.routes.shared import CONFLICT
from dripflow.api.schemas import EnrollmentOut, EnrollRequest, RefusalOut, RefusalPage, enrollment_out
from dripflow.engine.operator import (
    Refusal,
    engine_ctx,
    enroll_contact,
    find_contact,
    retry_enrollment,
    unenroll,
)
from dripflow.explain import _sentence as journal_sentence
from dripflow.store.database import transaction
from dripflow.store.tables import Enrollment, JournalEntry, Sequence

__all__ = ["EnrollmentPage", "router"]

router = APIRouter(
    prefix="/v1",
    tags=["enrollments"],
    responses=error_responses(401, 403, 422),
    dependencies=[Depends(refuse_nul)],
)


class EnrollmentPage(BaseModel):
    items: list[EnrollmentOut]
    next_cursor: str | None


def _cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) < 19):
        raise ApiError(422, "invalid_request", "`cursor` must be a `next_cursor` from an earlier page")
    return int(cursor)


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
    stmt = (
        select(Enrollment)
        .where(Enrollment.workspace_id == credential.workspace_id, Enrollment.id > _cursor(cursor))
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


@router.get("/enrollments/refusals", response_model=RefusalPage)
def list_refusals(
    credential: reader,
    engine: EngineDep,
    sequence: str | None = None,
    contact: str | None = None,
    reason: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = None,
) -> RefusalPage:
    """Every time a contact was not enrolled (SPEC §6 `not_enrolled`: `already_enrolled`,
    `reenroll_never`, `cooldown`, `in_other_sequence`, `excluded`, `blacklisted`, `unsubscribed`,
    `missing_routing`, `sequence_archived`), oldest first, with the sentence explain says.
    `contact` is an email or an id."""
    stmt = (
        select(JournalEntry)
        .where(
            JournalEntry.workspace_id == credential.workspace_id,
            JournalEntry.kind == "not_enrolled",
            JournalEntry.id > _cursor(cursor),
        )
        .order_by(JournalEntry.id)
        .limit(limit + 1)
    )
    if sequence is not None:
        stmt = stmt.where(JournalEntry.data["sequence"].as_string() == sequence)
    if reason is not None:
        stmt = stmt.where(JournalEntry.data["reason"].as_string() == reason)
    with transaction(engine) as session:
        if contact is not None:
            row = find_contact(session, credential.workspace_id, contact)
            if row is None:
                return RefusalPage(items=[], next_cursor=None)
            stmt = stmt.where(JournalEntry.contact_id == row.id)
        rows = list(session.scalars(stmt))
    items = [_refusal(row) for row in rows[:limit]]
    return RefusalPage(items=items, next_cursor=str(rows[limit - 1].id) if len(rows) > limit else None)


def _refusal(row: JournalEntry) -> RefusalOut:
    data = dict(row.data)
    detail = data.get("detail")
    return RefusalOut(
        at=row.at,
        contact_id=row.contact_id,
        contact=data.get("contact"),
        sequence=str(data.get("sequence")),
        reason=str(data.get("reason")),
        detail=str(detail) if detail is not None else None,
        by=data.get("by"),
        message=journal_sentence(data),
    )


@router.post(
    "/enrollments",
    response_model=EnrollmentOut,
    status_code=201,
    responses={**error_responses(400, 404), **CONFLICT},
)
def enroll(request: EnrollRequest, credential: writer, engine: EngineDep, clock: ClockDep) -> EnrollmentOut:
    """Enroll a contact in a sequence (`admin.enroll`). A refusal is answered 409 with the reason
    as `code` (`already_enrolled`, `reenroll_never`, `cooldown`, …, SPEC §6) and the sentence
    explain tells as `message`; it is recorded, as every refusal is."""
    if has_nul(request.model_dump()):
        raise ApiError(422, "invalid_request", "the body holds a NUL character (U+0000); remove it")
    workspace_id = credential.workspace_id
    with transaction(engine) as session:
        contact = find_contact(session, workspace_id, request.contact)
        if contact is None:
            raise ApiError(404, "not_found", f"no contact {request.contact!r} in this workspace")
        if session.get(Sequence, (workspace_id, request.sequence)) is None:
            raise ApiError(404, "not_found", f"no sequence {request.sequence!r} in this workspace")
        outcome = enroll_contact(engine_ctx(session, workspace_id, clock), contact.id, request.sequence)
        result = outcome if isinstance(outcome, Refusal) else enrollment_out(outcome)
    if isinstance(result, Refusal):  # the refusal is committed (explain tells it), then answered
        raise ApiError(409, result.reason, result.sentence)
    return result


@router.get("/enrollments/{enrollment_id}", response_model=EnrollmentOut, responses=error_responses(404))
def get_enrollment(enrollment_id: int, credential: reader, engine: EngineDep) -> EnrollmentOut:
    with transaction(engine) as session:
        return enrollment_out(_enrollment(session, credential.workspace_id, enrollment_id))


@router.post(
    "/enrollments/{enrollment_id}/unenroll",
    response_model=EnrollmentOut,
    responses={**error_responses(404), **CONFLICT},
)
def unenroll_route(
    enrollment_id: int, credential: writer, engine: EngineDep, clock: ClockDep
) -> EnrollmentOut:
    """Take the contact out of the sequence (`admin.unenroll`): the enrollment closes `canceled`,
    reason `manual`, and is kept (a POST, not a DELETE: nothing is deleted). Its messages still
    in the outbox are not sent. 409 when it is already closed."""
    with transaction(engine) as session:
        row = _enrollment(session, credential.workspace_id, enrollment_id)
        if row.open_key is None:
            raise _closed(row)
        unenroll(engine_ctx(session, credential.workspace_id, clock), row)
        return enrollment_out(row)


@router.post(
    "/enrollments/{enrollment_id}/retry",
    response_model=EnrollmentOut,
    responses={**error_responses(404), **CONFLICT},
)
def retry(enrollment_id: int, credential: writer, engine: EngineDep, clock: ClockDep) -> EnrollmentOut:
    """S11 "on request": a `blocked` enrollment tries its step again now. The answer shows the
    outcome: gone on (`active`, its next step), held (`queued`), or still `blocked` with the
    reason (fix the contact, then retry). 409 for an enrollment that is not blocked."""
    with transaction(engine) as session:
        row = _enrollment(session, credential.workspace_id, enrollment_id)
        if row.status != "blocked":
            raise ApiError(
                409,
                "not_blocked",
                f"enrollment {enrollment_id} is {row.status}, not blocked: nothing to retry",
            )
        retry_enrollment(engine_ctx(session, credential.workspace_id, clock), row)
        return enrollment_out(row)


def _enrollment(session: Session, workspace_id: str, enrollment_id: int) -> Enrollment:
    row = session.get(Enrollment, enrollment_id) if 0 < enrollment_id < 2**63 else None  # BIGINT
    if row is None or row.workspace_id != workspace_id:
        raise ApiError(404, "not_found", f"no enrollment {enrollment_id} in this workspace")
    return row


def _closed(row: Enrollment) -> ApiError:
    return ApiError(
        409, "already_closed", f"enrollment {row.id} is already closed ({row.status}, {row.reason})"
    )
