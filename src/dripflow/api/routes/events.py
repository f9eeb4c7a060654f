"""``POST /v1/events``: one X2 event, or ``{"events": [...]}``, applied all or none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel

from dripflow.api.deps import ClockDep, EngineDep, has_nul, refuse_nul, writer
from dripflow.api.errors import ApiError, error_responses
from dripflow.core.errors import UserError
from dripflow.engine.eventfile import InputEvent, parse_at
from dripflow.engine.ingest_file import EventsRefused, ingest_events

router = APIRouter(
    prefix="/v1",
    tags=["events"],
    responses=error_responses(401, 403, 422),
    dependencies=[Depends(refuse_nul)],
)

MAX_EVENTS = 10_000


class Applied(BaseModel):
    applied: int
    duplicates: int


@router.post("/events", response_model=Applied, responses=error_responses(400, 413))
def post_events(
    credential: writer,
    engine: EngineDep,
    clock: ClockDep,
    body: dict[str, Any] = Body(  # noqa: B008 - FastAPI's way to take a free-form JSON body
        ..., examples=[{"type": "list.subscribed", "contact": "ann@x.test", "list": "newsletter"}]
    ),
) -> Applied:
    """Apply events (SPEC X2; `at` optional, default now). An `id` makes an event idempotent (D3)."""
    if has_nul(body):
        raise ApiError(422, "invalid_request", "the body holds a NUL character (U+0000); remove it")
    raw = body["events"] if set(body) == {"events"} else [body]
    if not isinstance(raw, list) or not raw:
        raise ApiError(422, "invalid_request", "`events` must be a non-empty list of event objects")
    if len(raw) > MAX_EVENTS:
        raise ApiError(413, "too_many_events", f"send at most {MAX_EVENTS} events per request")
    now = clock.now()
    items: list[InputEvent] = []
    problems: list[dict[str, Any]] = []
    for index, event in enumerate(raw):
        try:
            items.append(_event(index, event, now))
        except UserError as exc:
            problems.append({"index": index, "message": str(exc)})
    if problems:
        raise ApiError(422, "invalid_events", "some events are not valid; nothing was applied", problems)
    try:
        report = ingest_events(engine, credential.workspace_id, items, Path("request"))
    except EventsRefused as exc:
        refused = [{"index": line - 1, "message": text} for line, text in exc.problems]
        raise ApiError(422, "invalid_events", "some events cannot be applied; nothing was", refused) from None
    return Applied(applied=report.applied, duplicates=report.duplicates)


def _event(index: int, event: object, now: Any) -> InputEvent:
    if not isinstance(event, dict):
        raise UserError("each event must be a JSON object")
    if not isinstance(event.get("type"), str):
        raise UserError('the event has no `type` (such as "list.subscribed")')
    _check_contact(event.get("contact"))
    try:
        at = parse_at(event["at"], f"event {index}") if "at" in event else now
    except OverflowError:  # a time zone pushes it past year 1 or 9999
        raise UserError(f"`at` {event['at']!r} is out of range") from None
    if at > now:
        raise UserError(f"`at` {event['at']} is in the future")
    return InputEvent(index + 1, at, event)


_TEXT_KEYS = ("phone", "first_name", "last_name", "timezone", "source", "owner")


def _check_contact(contact: object) -> None:
    """Refuse contacts the store cannot take (a blank email, a number for a name) with a message."""
    if isinstance(contact, str) and not contact.strip():
        raise UserError("`contact` is empty; give an email or a contact id")
    if not isinstance(contact, dict):
        return  # absent, or the engine names what is wrong
    email = contact.get("email")
    if email is not None and (not isinstance(email, str) or not email.strip()):
        raise UserError("`contact.email` must be an email address")
    for key in _TEXT_KEYS:
        if contact.get(key) is not None and not isinstance(contact[key], str):
            raise UserError(f"`contact.{key}` must be a string")
    for key in ("address", "fields"):
        if contact.get(key) is not None and not isinstance(contact[key], dict):
            raise UserError(f"`contact.{key}` must be an object")
