"""``POST /v1/inbound``: one raw email as received — a bounce, a complaint or a reply (issue 6).

For a mail server's pipe or an inbound-mail webhook: the body is the RFC 5322 message itself
(``Content-Type: message/rfc822`` or ``text/plain``).

* An RFC 3464 delivery status report becomes ``email.bounced`` events and an RFC 5965 abuse
  report ``email.complained`` (SPEC D5), through the same code as ``dripflow inbound``
  (:func:`dripflow.delivery.reports.ingest_reports`): applied to the contact of the original
  message, all or none, once (their ``id`` is derived from the report).
* Any other email is read as a reply (:mod:`dripflow.delivery.replies`): the first of our
  Message-IDs in its ``In-Reply-To`` / ``References`` names the message, and so the contact,
  that gets ``email.replied`` (S12 ``stop_on: [replied]``). An out-of-office or other automatic
  answer is recognised and applies nothing (200, ``kind: auto_reply``).

A message that names none of this workspace's messages (nor, for a report, its contacts) is
refused with 422 and changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import Engine, select
from starlette.concurrency import run_in_threadpool

from dripflow.api.bodies import unstorable
from dripflow.api.deps import ClockDep, EngineDep, refuse_nul, writer
from dripflow.api.errors import ApiError, ErrorBody, error_responses
from dripflow.api.schemas import InboundEvent, InboundResult
from dripflow.core.errors import UserError
from dripflow.delivery.inbound import NotAReport, parse_report
from dripflow.delivery.replies import read_reply
from dripflow.delivery.reports import ReportFile, ingest_reports
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import EventsRefused, ingest_events
from dripflow.store.database import transaction
from dripflow.store.tables import Message

__all__ = ["MAX_INBOUND_BYTES", "router"]

MAX_INBOUND_BYTES = 10 * 1024 * 1024
_TYPES = ("message/rfc822", "text/plain")

router = APIRouter(prefix="/v1", tags=["inbound"], dependencies=[Depends(refuse_nul)])

_BODY = {"schema": {"type": "string", "description": "The raw email, headers and body, as received."}}


@router.post(
    "/inbound",
    response_model=InboundResult,
    responses={
        **error_responses(401, 403, 413, 422),
        415: {"model": ErrorBody, "description": "Send the raw email as message/rfc822 or text/plain."},
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"message/rfc822": _BODY, "text/plain": _BODY}}
    },
)
async def inbound(request: Request, credential: writer, engine: EngineDep, clock: ClockDep) -> InboundResult:
    """Apply a bounce report, a complaint report or a reply, given as the raw email."""
    mime = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if mime not in _TYPES:
        raise ApiError(415, "unsupported_media_type", "send the raw email as message/rfc822 or text/plain")
    raw = await _read(request)
    if not raw.strip():
        raise ApiError(422, "invalid_request", "the body is empty: send the raw email")
    if b"\x00" in raw:
        raise ApiError(422, "invalid_request", "the body holds a NUL byte; send the email as received")
    return await run_in_threadpool(_apply, engine, credential.workspace_id, raw, clock.now())


async def _read(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_INBOUND_BYTES:
            raise ApiError(413, "too_large", f"an inbound email may be at most {MAX_INBOUND_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _apply(engine: Engine, workspace_id: str, raw: bytes, now: datetime) -> InboundResult:
    try:
        events = parse_report(raw)
    except NotAReport:
        return _reply(engine, workspace_id, raw, now)
    bounce = _report_type(raw) == "delivery-status"
    if not events:
        if bounce:
            reason = "the report names no failed recipient (only delayed or delivered ones)"
        else:
            reason = "a feedback report of a type that is not a complaint (such as not-spam)"
        return InboundResult(
            kind="bounce" if bounce else "not_a_complaint", applied=0, duplicates=0, events=[], reason=reason
        )
    if unstorable(events) is not None:
        raise ApiError(
            422, "invalid_request", "the report holds characters that cannot be stored (NUL, bad bytes)"
        )
    try:
        report = ingest_reports(engine, workspace_id, [ReportFile("request", raw)], now)
    except UserError as exc:
        raise ApiError(422, "unmatched", str(exc)) from None
    return InboundResult(
        kind="bounce" if bounce else "complaint",
        applied=report.applied,
        duplicates=report.duplicates,
        events=[_summary(event) for event in events],
    )


def _reply(engine: Engine, workspace_id: str, raw: bytes, now: datetime) -> InboundResult:
    reply = read_reply(raw)
    if reply.automatic is not None:
        return InboundResult(
            kind="auto_reply",
            applied=0,
            duplicates=0,
            events=[],
            reason=_printable(f"an automatic answer: {reply.automatic}"),
        )
    if not reply.answers:
        raise ApiError(
            422,
            "unmatched",
            "not a bounce or complaint report, and not a reply: it has no In-Reply-To or References",
        )
    with transaction(engine) as session:
        found = dict(
            session.execute(
                select(Message.message_id, Message.contact_id).where(
                    Message.workspace_id == workspace_id, Message.message_id.in_(reply.answers)
                )
            ).all()
        )
    original = next((message_id for message_id in reply.answers if message_id in found), None)
    if original is None:
        raise ApiError(422, "unmatched", "the reply answers no message of this workspace")
    event: dict[str, Any] = {
        "type": "email.replied",
        "contact": str(found[original]),
        "message": original,
        "id": reply.key,
    }
    try:
        report = ingest_events(engine, workspace_id, [InputEvent(1, now, event)], Path("request"))
    except (EventsRefused, LookupError) as exc:  # the contact was deleted since the message was sent
        raise ApiError(422, "unmatched", str(exc)) from None
    return InboundResult(
        kind="reply",
        applied=report.applied,
        duplicates=report.duplicates,
        events=[InboundEvent(type="email.replied", message=original)],
    )


def _report_type(raw: bytes) -> str | None:
    value = message_from_bytes(raw, policy=policy.compat32).get_param("report-type")
    return value.lower() if isinstance(value, str) else None


def _printable(text: str) -> str:
    """Header bytes that were not text (kept as surrogates by the parser) cannot go into JSON."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _summary(event: dict[str, Any]) -> InboundEvent:
    kind = event.get("kind")
    return InboundEvent(
        type=str(event["type"]),
        message=str(event["message"]) if event.get("message") else None,
        kind=str(kind) if kind is not None else None,
    )
