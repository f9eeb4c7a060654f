"""Broadcasts (SPEC §8 B1–B4): ``GET /v1/broadcasts`` and ``/{id}``, ``POST /v1/broadcasts`` (a
draft), ``/{id}/schedule``, ``/{id}/cancel`` and ``/{id}/test-send``.

The list holds the workspace file's broadcasts (``source: workspace``; changed by changing the
file) and those made here (``source: api``). Both are sent by the same sender, per B1–B4.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends
from sqlalchemy.orm import Session

from dripflow.api.deps import ClockDep, EngineDep, has_nul, reader, refuse_nul, writer
from dripflow.api.errors import ApiError, error_responses
from dripflow.api.routes.shared import CONFLICT, actor, invalid
from dripflow.api.schemas import (
    BroadcastCanceled,
    BroadcastOut,
    ScheduleRequest,
    TestSendOut,
    TestSendRequest,
)
from dripflow.core.validate import WorkspaceInvalid
from dripflow.engine.broadcast_admin import (
    BroadcastConflict,
    PreparedTest,
    cancel_broadcast,
    create_broadcast,
    deliver_test,
    prepare_test,
    schedule_broadcast,
    smtp_transport,
)
from dripflow.engine.context import load_rules
from dripflow.engine.operator import engine_ctx, find_contact
from dripflow.store.broadcasts import BroadcastState, api_broadcast, broadcast_states
from dripflow.store.database import transaction
from dripflow.store.tables import ApiBroadcast
from dripflow.store.views import load_views

__all__ = ["broadcast_out", "find_broadcast", "router"]

router = APIRouter(
    prefix="/v1",
    tags=["broadcasts"],
    responses=error_responses(401, 403, 422),
    dependencies=[Depends(refuse_nul)],
)

_EXAMPLE = {
    "id": "spring-sale",
    "template": "hello",
    "audience": {"all": [{"on_list": "news"}, {"not": {"has_tag": "customer"}}]},
    "send_at": "2026-04-01 09:00",
    "local_time": True,
}


def broadcast_out(state: BroadcastState) -> BroadcastOut:
    return BroadcastOut(
        id=state.id,
        source=state.source,
        status=state.status,
        definition=state.definition,
        queued=state.queued,
        skipped=state.skipped,
        created_at=state.created_at,
        scheduled_at=state.scheduled_at,
        started_at=state.started_at,
        finished_at=state.finished_at,
        canceled_at=state.canceled_at,
    )


def find_broadcast(session: Session, workspace_id: str, broadcast_id: str) -> BroadcastState:
    workspace = load_rules(session, workspace_id).workspace
    for state in broadcast_states(session, workspace):
        if state.id == broadcast_id:
            return state
    raise ApiError(404, "not_found", f"no broadcast {broadcast_id!r} in this workspace")


@router.get("/broadcasts", response_model=list[BroadcastOut])
def list_broadcasts(credential: reader, engine: EngineDep) -> list[BroadcastOut]:
    """The workspace file's broadcasts, then those made through the API, each with its status."""
    with transaction(engine) as session:
        workspace = load_rules(session, credential.workspace_id).workspace
        return [broadcast_out(state) for state in broadcast_states(session, workspace)]


@router.get("/broadcasts/{broadcast_id}", response_model=BroadcastOut, responses=error_responses(404))
def get_broadcast(broadcast_id: str, credential: reader, engine: EngineDep) -> BroadcastOut:
    with transaction(engine) as session:
        return broadcast_out(find_broadcast(session, credential.workspace_id, broadcast_id))


@router.post(
    "/broadcasts",
    response_model=BroadcastOut,
    status_code=201,
    responses={**error_responses(400), **CONFLICT},
)
def create(
    credential: writer,
    engine: EngineDep,
    clock: ClockDep,
    body: dict[str, Any] = Body(  # noqa: B008 - FastAPI's way to take a free-form JSON body
        ...,
        description=(
            "A broadcast as in the workspace file (SPEC §2): `template`, `audience`, optional "
            "`mailbox`, `send_at`, `local_time`, and `id` (made up when left out)."
        ),
        examples=[_EXAMPLE],
    ),
) -> BroadcastOut:
    """A draft: nothing is sent until it is scheduled. Its template, mailbox and audience are
    checked against the workspace (422 with the problems); an id in use is a 409."""
    if has_nul(body):
        raise ApiError(422, "invalid_request", "the body holds a NUL character (U+0000); remove it")
    with transaction(engine) as session:
        workspace = load_rules(session, credential.workspace_id).workspace
        try:
            row = create_broadcast(session, workspace, body, clock.now(), actor(credential))
        except WorkspaceInvalid as exc:
            raise invalid("invalid_broadcast", "the broadcast", exc) from None
        except BroadcastConflict as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        return broadcast_out(find_broadcast(session, credential.workspace_id, row.id))


@router.post(
    "/broadcasts/{broadcast_id}/schedule",
    response_model=BroadcastOut,
    responses={**error_responses(400, 404), **CONFLICT},
)
def schedule(
    broadcast_id: str,
    credential: writer,
    engine: EngineDep,
    clock: ClockDep,
    request: ScheduleRequest | None = None,
) -> BroadcastOut:
    """Schedule a draft, or move one not yet started. `send_at` is read in the workspace zone, or
    with `local_time: true` in each contact's (B4: one wave per zone, the audience evaluated at
    each wave, B1); `"now"` sends at the worker's next pass. A time that has passed is refused."""
    changes = request.model_dump() if request is not None else {}
    if has_nul(changes):
        raise ApiError(422, "invalid_request", "the body holds a NUL character (U+0000); remove it")
    with transaction(engine) as session:
        row = _api_row(session, credential.workspace_id, broadcast_id)
        workspace = load_rules(session, credential.workspace_id).workspace
        try:
            schedule_broadcast(session, workspace, row, changes, clock.now(), actor(credential))
        except WorkspaceInvalid as exc:
            raise invalid("invalid_broadcast", "the schedule", exc) from None
        except BroadcastConflict as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        return broadcast_out(find_broadcast(session, credential.workspace_id, broadcast_id))


@router.post(
    "/broadcasts/{broadcast_id}/cancel",
    response_model=BroadcastCanceled,
    responses={**error_responses(404), **CONFLICT},
)
def cancel(broadcast_id: str, credential: writer, engine: EngineDep, clock: ClockDep) -> BroadcastCanceled:
    """Stop it: nothing more is sent (later local-time waves included) and its messages still
    waiting in the outbox are withdrawn (`withdrawn`). Canceling again changes nothing; once all
    of it has gone out, a 409."""
    with transaction(engine) as session:
        row = _api_row(session, credential.workspace_id, broadcast_id)
        try:
            withdrawn = cancel_broadcast(session, row, clock.now(), actor(credential))
        except BroadcastConflict as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        state = find_broadcast(session, credential.workspace_id, broadcast_id)
        return BroadcastCanceled(**broadcast_out(state).model_dump(), withdrawn=withdrawn)


@router.post(
    "/broadcasts/{broadcast_id}/test-send",
    response_model=TestSendOut,
    responses=error_responses(400, 404),
)
def test_send(
    broadcast_id: str, request: TestSendRequest, credential: writer, engine: EngineDep, clock: ClockDep
) -> TestSendOut:
    """Send the broadcast once to `to`, marked `[Test]` in the subject, rendered for `contact`
    (else for a stand-in with only the address). It is not counted in reports, does not stand
    for anyone in B3 and moves no frequency cap; its links act on no one. With SMTP configured it
    goes out now (`sent`, or `failed` with the server's answer); without, it is `captured`."""
    if has_nul(request.model_dump()):
        raise ApiError(422, "invalid_request", "the body holds a NUL character (U+0000); remove it")
    workspace_id = credential.workspace_id
    with transaction(engine) as session:
        state = find_broadcast(session, workspace_id, broadcast_id)
        ctx = engine_ctx(session, workspace_id, clock)
        view = None
        if request.contact is not None:
            contact = find_contact(session, workspace_id, request.contact)
            if contact is None:
                raise ApiError(404, "not_found", f"no contact {request.contact!r} in this workspace")
            view = load_views(session, workspace_id, [contact.id])[contact.id]
        transport = smtp_transport(ctx.workspace, bool(getattr(clock, "virtual", False)))
        try:
            prepared = prepare_test(
                ctx, broadcast_id, state.definition, request.to, view, smtp=transport is not None
            )
        except WorkspaceInvalid as exc:
            raise invalid("invalid_test", "the test message", exc) from None
        if transport is None:
            session.add(prepared.message)
    if transport is not None:  # sent outside any transaction: an SMTP server may take its time
        deliver_test(prepared, transport, clock.now())
        with transaction(engine) as session:
            session.add(prepared.message)
    return _test_out(prepared)


def _test_out(prepared: PreparedTest) -> TestSendOut:
    message = prepared.message
    return TestSendOut(
        to=message.recipient,
        subject=message.subject or "",
        status=message.status,
        message_id=message.message_id,
        error=message.last_error,
    )


def _api_row(session: Session, workspace_id: str, broadcast_id: str) -> ApiBroadcast:
    row = api_broadcast(session, workspace_id, broadcast_id)
    if row is not None:
        workspace = load_rules(session, workspace_id).workspace
        if all(item.id != broadcast_id for item in workspace.broadcasts):
            return row
    state = find_broadcast(session, workspace_id, broadcast_id)  # 404 when there is none
    raise ApiError(
        409,
        "defined_in_workspace",
        f"the broadcast {state.id!r} is defined in the workspace file: change it there (PUT /v1/workspace)",
    )
