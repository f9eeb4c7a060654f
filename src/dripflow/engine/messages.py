"""Putting a built message into the outbox exactly once (SPEC D3), with its signed links (D1, D2).

With no SMTP configured the outbox is the dev inbox (SPEC §10): messages stay there as
``captured``; a delivery worker takes ``queued`` ones.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Executable, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dripflow.core.contact_view import ContactView
from dripflow.delivery.transport import ENV_SMTP_URL
from dripflow.engine.context import Ctx
from dripflow.store.database import built_once, dialect_insert
from dripflow.store.tables import Enrollment, Message
from dripflow.tracking.tokens import tracking_path

__all__ = ["defer_message", "insert_messages", "link_url", "message_row", "open_url", "unsubscribe_url"]


def _base_url(ctx: Ctx) -> str:
    return (ctx.workspace.workspace.base_url or "http://localhost:8000").rstrip("/")


def unsubscribe_url(ctx: Ctx, key: str, contact_id: int, sequence_id: str | None) -> str:
    """D1: a sequence email's link leaves that sequence, with a choice to leave everything."""
    payload = {"c": contact_id, "m": key, "s": sequence_id}
    return _base_url(ctx) + tracking_path("u", ctx.workspace_id, payload)


def link_url(ctx: Ctx, key: str, contact_id: int, name: str) -> str:
    links = ctx.workspace.catalog.links
    if name not in links:
        raise KeyError(f"no tracking link named {name!r} in the catalog")
    payload = {"c": contact_id, "m": key, "l": name}
    return _base_url(ctx) + tracking_path("c", ctx.workspace_id, payload)


def open_url(ctx: Ctx, key: str, contact_id: int) -> str:
    """D2: the open pixel of message ``key`` (an ``<img>`` the HTML part may end with)."""
    return _base_url(ctx) + tracking_path("o", ctx.workspace_id, {"c": contact_id, "m": key, "o": 1})


def message_row(
    ctx: Ctx,
    *,
    key: str,
    contact: ContactView,
    enrollment: Enrollment | None,
    step_id: str | None,
    channel: str,
    recipient: str,
    sender: str | None,
    mailbox: str | None,
    template: str,
    variant: str | None,
    subject: str | None,
    text: str,
    html: str | None,
    in_reply_to: str | None,
    domain: str,
    broadcast_id: str | None = None,
    not_before: datetime | None = None,
) -> dict[str, Any]:
    """The outbox row of one message (for :func:`insert_messages`)."""
    # Deterministic Message-ID: the same run of a simulation gives the same headers (X1).
    message_id = f"<{key.replace(':', '.')}.{ctx.workspace_id}@{domain}>"
    params = {
        "workspace_id": ctx.workspace_id,
        "key": key,
        "contact_id": contact.id,
        "enrollment_id": enrollment.id if enrollment is not None else None,
        "sequence_id": enrollment.sequence_id if enrollment is not None else None,
        "step_id": step_id,
        "broadcast_id": broadcast_id,
        "channel": channel,
        "recipient": recipient,
        "sender": sender,
        "mailbox": mailbox,
        "template": template,
        "variant": variant,
        "subject": subject,
        "body_text": text,
        "body_html": html,
        "in_reply_to": in_reply_to,
        "message_id": message_id,
        "status": _initial_status(ctx, channel),
        "created_at": ctx.now,
        "not_before": not_before,
    }
    return params


def insert_messages(ctx: Ctx, rows: list[dict[str, Any]]) -> set[str]:
    """Queue many messages in one statement; the keys inserted (a key that exists already is left
    as it is, D3/B3).

    The statement is built once per database and run on the session's connection as plain Core
    (hot path: the ORM's bulk-insert machinery costs several times more; a broadcast queues its
    messages a batch at a time). The rows depend on no pending ORM change: their contacts and
    enrollments already exist.
    """
    if not rows:
        return set()
    connection = ctx.session.connection()
    # One row is a plain execute: an executemany of one goes through the batching machinery.
    parameters: dict[str, Any] | list[dict[str, Any]] = rows[0] if len(rows) == 1 else rows
    return set(connection.execute(built_once(ctx.session, _insert_statement), parameters).scalars())


def defer_message(ctx: Ctx, row: dict[str, Any]) -> None:
    """Queue one message with the batch's others (:meth:`Ctx.defer`: one ``executemany`` for the
    batch, hot path), a key that exists already left as it is (D3), as :func:`insert_messages`."""
    ctx.defer(built_once(ctx.session, _insert_ignoring), row)


_MESSAGES = cast(Table, Message.__table__)


def _insert_ignoring(session: Session) -> postgresql.Insert | sqlite.Insert:
    """INSERT a message unless its key exists already (D3/B3)."""
    return dialect_insert(session, _MESSAGES).on_conflict_do_nothing(
        index_elements=[_MESSAGES.c.workspace_id, _MESSAGES.c.key]
    )


def _insert_statement(session: Session) -> Executable:
    """:func:`_insert_ignoring`, telling which keys it inserted."""
    return _insert_ignoring(session).returning(_MESSAGES.c.key)


def _initial_status(ctx: Ctx, channel: str) -> str:
    delivery = ctx.workspace.delivery
    # DRIPFLOW_SMTP_URL overrides delivery.smtp (SPEC §10): either makes email go out for real.
    smtp = delivery.smtp is not None or bool(os.environ.get(ENV_SMTP_URL))
    configured = smtp if channel == "email" else delivery.sms is not None
    return "queued" if configured and not getattr(ctx.clock, "virtual", False) else "captured"


def latest_message(ctx: Ctx, contact_id: int) -> Message | None:
    return ctx.session.scalars(
        select(Message)
        .where(Message.workspace_id == ctx.workspace_id, Message.contact_id == contact_id)
        .order_by(Message.id.desc())
        .limit(1)
    ).first()
