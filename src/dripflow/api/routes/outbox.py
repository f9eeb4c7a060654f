"""The outbox over the API: the built-in dev inbox (SPEC §10) and the delivery state (issue 6).

``GET /v1/outbox`` lists the messages the engine built, newest first, as ``dripflow outbox list``
does: ``captured`` ones (no SMTP configured: kept, never sent) and ``queued``, ``sent``,
``bounced`` … ones. ``GET /v1/outbox/{id}`` adds the bodies and the whole email as delivery
builds it, so a developer sees exactly what a contact would get.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from dripflow.api.deps import ClockDep, EngineDep, reader, refuse_nul
from dripflow.api.errors import ApiError, error_responses
from dripflow.api.schemas import OutboxItem, OutboxMessage, OutboxPage
from dripflow.core.clock import Clock
from dripflow.delivery.mime import UnsafeHeader, build_message
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.messages import unsubscribe_url
from dripflow.store.contacts import ContactRepo
from dripflow.store.database import transaction
from dripflow.store.tables import Message

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/outbox",
    tags=["outbox"],
    responses=error_responses(401, 403, 422),
    dependencies=[Depends(refuse_nul)],
)

Status = Literal["captured", "queued", "sending", "sent", "bounced", "failed", "canceled"]


@router.get("", response_model=OutboxPage, responses=error_responses(404))
def list_outbox(
    credential: reader,
    engine: EngineDep,
    status: Status | None = None,
    contact: str | None = Query(None, description="Only this contact's messages (an email or an id)."),
    limit: int = Query(50, ge=1, le=1000),
    cursor: str | None = None,
) -> OutboxPage:
    """Messages newest first; pass `next_cursor` back as `cursor` for older ones."""
    stmt = select(Message).where(Message.workspace_id == credential.workspace_id)
    if cursor is not None:
        if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
            raise ApiError(422, "invalid_request", "`cursor` must be a `next_cursor` from an earlier page")
        stmt = stmt.where(Message.id < int(cursor))
    if status is not None:
        stmt = stmt.where(Message.status == status)
    with transaction(engine) as session:
        if contact is not None:
            row = ContactRepo(session, credential.workspace_id).get(contact)
            if row is None:
                raise ApiError(404, "not_found", f"no contact {contact!r} in this workspace")
            stmt = stmt.where(Message.contact_id == row.id)
        rows = list(session.scalars(stmt.order_by(Message.id.desc()).limit(limit + 1)))
        items = [_item(row) for row in rows[:limit]]
    return OutboxPage(items=items, next_cursor=str(items[-1].id) if len(rows) > limit else None)


@router.get("/{message_id}", response_model=OutboxMessage, responses=error_responses(404))
def get_message(message_id: int, credential: reader, engine: EngineDep, clock: ClockDep) -> OutboxMessage:
    """One message with its text and HTML bodies and, for an email, the raw RFC 5322 message."""
    with transaction(engine) as session:
        row = session.get(Message, message_id) if 0 < message_id < 2**63 else None
        if row is None or row.workspace_id != credential.workspace_id:
            raise ApiError(404, "not_found", f"no message {message_id} in this workspace's outbox")
        return OutboxMessage(
            **_item(row).model_dump(),
            sender=row.sender,
            in_reply_to=row.in_reply_to,
            text=row.body_text,
            html=row.body_html,
            raw=_raw(session, row, clock),
        )


def _item(row: Message) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        created_at=row.created_at,
        status=row.status,
        channel=row.channel,
        recipient=row.recipient,
        subject=row.subject,
        contact_id=row.contact_id,
        sequence=row.sequence_id,
        step=row.step_id,
        broadcast=row.broadcast_id,
        template=row.template,
        variant=row.variant,
        mailbox=row.mailbox,
        message_id=row.message_id,
        sent_at=row.sent_at,
        attempts=row.attempts,
        last_error=row.last_error,
    )


def _raw(session: Session, row: Message, clock: Clock) -> str | None:
    """The email as delivery builds it (footer, List-Unsubscribe, signed links): dated when it was
    sent, else when it was built. None for SMS, or when its headers cannot be built."""
    if row.channel != "email":
        return None
    ctx = Ctx(session, row.workspace_id, load_rules(session, row.workspace_id), clock)
    try:
        url = unsubscribe_url(ctx, row.key, row.contact_id, row.sequence_id)
        mime = build_message(row, ctx.workspace, date=row.sent_at or row.created_at, unsubscribe_url=url)
        return mime.as_string()
    except (UnsafeHeader, ValueError):
        return None
