"""Broadcasts made through the API (issue 6): create a draft, schedule it, cancel it, send a test.

A broadcast made here has the workspace file's shape (SPEC §2) and is checked against the
workspace the same way (its template, mailbox and audience must resolve). Once scheduled the
sender (:mod:`dripflow.engine.broadcasts`) sends it exactly like one of the file's, B1–B4 included:
it only reads ``api_broadcasts`` next to the file. A test message goes to any address, is marked
``[Test]``, and belongs to no contact and no broadcast: it is never counted in a report, never
takes a contact's place in B3 and never moves a frequency cap (D7).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dripflow.core.addresses import InvalidAddress, normalize_email
from dripflow.core.contact_view import ContactView
from dripflow.core.model import Broadcast, EmailTemplate
from dripflow.core.model import Workspace as WorkspaceDef
from dripflow.core.render import MissingVariable, RenderContext, RenderFailure, render_email
from dripflow.core.timing import local_to_utc
from dripflow.core.validate import TOP, Problem, WorkspaceInvalid, check_workspace_data
from dripflow.delivery.dkim import SigningFailed, sign_from, signers_for
from dripflow.delivery.mime import UnsafeHeader, build_message, envelope_sender
from dripflow.delivery.transport import SendFailure, Transport, transport_for
from dripflow.engine.context import Ctx
from dripflow.engine.messages import link_url, unsubscribe_url
from dripflow.store.events import AuditLog
from dripflow.store.tables import ApiBroadcast, BroadcastRun, Message

__all__ = [
    "BroadcastConflict",
    "PreparedTest",
    "api_broadcast_problems",
    "cancel_broadcast",
    "create_broadcast",
    "deliver_test",
    "parse_broadcast",
    "prepare_test",
    "schedule_broadcast",
    "smtp_transport",
]

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_PLACEHOLDER_SEND_AT = "2000-01-01 00:00"  # a draft may have no time yet; the check needs one


class BroadcastConflict(Exception):
    """The broadcast cannot do that in the state it is in (already sent, another's id …)."""


def _invalid(key: str, message: str) -> WorkspaceInvalid:
    return WorkspaceInvalid([Problem("request", 0, key, message)])


def parse_broadcast(data: Mapping[str, Any], workspace: WorkspaceDef) -> Broadcast:
    """Check a broadcast against the workspace as if it were in the file; problems have paths
    relative to it (``template``, ``audience.on_list``). Raises ``WorkspaceInvalid``."""
    candidate = workspace.model_dump(mode="json")
    broadcasts: list[object] = candidate["broadcasts"]
    index = len(broadcasts)
    broadcasts.append(dict(data))
    checked, problems = check_workspace_data(candidate, "request")
    if checked is not None:
        return checked.broadcasts[index]
    prefix = f"broadcasts[{index}]"
    relative = []
    for problem in problems:
        if problem.path == prefix:
            path = TOP
        elif problem.path.startswith(prefix + "."):
            path = problem.path[len(prefix) + 1 :]
        else:
            continue  # the workspace's own problems are not this request's (it was applied valid)
        relative.append(Problem("request", 0, path, problem.message))
    raise WorkspaceInvalid(relative or [Problem("request", 0, TOP, "the broadcast is not valid")])


def _checked_definition(data: Mapping[str, Any], workspace: WorkspaceDef) -> dict[str, Any]:
    """The definition as stored: the file's canonical form, without ``send_at`` while it has none."""
    has_time = data.get("send_at") is not None
    parsed = parse_broadcast(
        {**data, "send_at": data["send_at"] if has_time else _PLACEHOLDER_SEND_AT}, workspace
    )
    document = parsed.model_dump(mode="json")
    if not has_time:
        document.pop("send_at", None)
    return document


def create_broadcast(
    session: Session, workspace: WorkspaceDef, data: Mapping[str, Any], now: datetime, actor: str
) -> ApiBroadcast:
    """A new draft; ``id`` is made up when not given. Raises WorkspaceInvalid or BroadcastConflict."""
    given = data.get("id")
    broadcast_id = given if given is not None else f"broadcast-{uuid.uuid4().hex[:10]}"
    if not isinstance(broadcast_id, str) or not ID_PATTERN.fullmatch(broadcast_id):
        raise _invalid(
            "id", "must be 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    workspace_id = workspace.workspace.id
    if any(item.id == broadcast_id for item in workspace.broadcasts):
        raise BroadcastConflict(
            f"the workspace file already has a broadcast {broadcast_id!r}; choose another id"
        )
    if session.get(ApiBroadcast, (workspace_id, broadcast_id)) is not None:
        raise BroadcastConflict(f"a broadcast {broadcast_id!r} already exists; choose another id")
    definition = _checked_definition({**data, "id": broadcast_id}, workspace)
    row = ApiBroadcast(
        workspace_id=workspace_id,
        id=broadcast_id,
        status="draft",
        definition=definition,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    AuditLog(session, workspace_id).record(actor, "broadcast.created", f"broadcast:{broadcast_id}", {}, now)
    return row


def _run(session: Session, workspace_id: str, broadcast_id: str) -> BroadcastRun | None:
    return session.get(BroadcastRun, (workspace_id, broadcast_id))


def schedule_broadcast(
    session: Session,
    workspace: WorkspaceDef,
    row: ApiBroadcast,
    changes: Mapping[str, Any],
    now: datetime,
    actor: str,
) -> None:
    """Schedule (or move) a broadcast that has not started: ``send_at`` ("YYYY-MM-DD HH:MM" in the
    workspace zone, or each contact's with ``local_time``, B4; ``now``: at once)."""
    if _run(session, row.workspace_id, row.id) is not None:
        raise BroadcastConflict(f"the broadcast {row.id!r} has already started; it can only be canceled")
    zone = ZoneInfo(workspace.workspace.timezone)
    data = {**row.definition, **{key: value for key, value in changes.items() if value is not None}}
    if data.get("send_at") == "now":
        data["send_at"] = now.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    if data.get("send_at") is None:
        raise _invalid("send_at", 'required: a date and time such as "2026-11-27 09:00", or "now"')
    definition = _checked_definition(data, workspace)
    wall = Broadcast.model_validate(definition).send_at
    if local_to_utc(wall.date(), wall.time(), zone) < now.replace(second=0, microsecond=0):
        raise _invalid(
            "send_at",
            f'{definition["send_at"]} in {zone.key} has passed; give a later time, or "now" to send at once',
        )
    row.definition = definition
    row.status = "scheduled"
    row.scheduled_at = now
    row.canceled_at = None
    row.updated_at = now
    session.flush()
    AuditLog(session, row.workspace_id).record(
        actor, "broadcast.scheduled", f"broadcast:{row.id}", {"send_at": definition["send_at"]}, now
    )


def cancel_broadcast(session: Session, row: ApiBroadcast, now: datetime, actor: str) -> int:
    """Stop a broadcast: nothing more is sent (later local-time waves included), and its messages
    still waiting in the outbox are canceled; returns how many. Raises BroadcastConflict once all
    of it has gone out."""
    if row.status == "canceled":
        return 0
    run = _run(session, row.workspace_id, row.id)
    if run is not None and run.status == "finished":
        waiting = session.scalar(
            select(Message.id)
            .where(
                Message.workspace_id == row.workspace_id,
                Message.broadcast_id == row.id,
                Message.status == "queued",
            )
            .limit(1)
        )
        if waiting is None:
            raise BroadcastConflict(f"the broadcast {row.id!r} has already been sent")
    row.status = "canceled"
    row.canceled_at = now
    row.updated_at = now
    withdrawn = session.execute(
        update(Message)
        .where(
            Message.workspace_id == row.workspace_id,
            Message.broadcast_id == row.id,
            Message.status == "queued",
        )
        .values(status="canceled", last_error="the broadcast was canceled")
        .execution_options(synchronize_session=False)
    )
    session.flush()
    count = int(getattr(withdrawn, "rowcount", 0) or 0)
    AuditLog(session, row.workspace_id).record(
        actor, "broadcast.canceled", f"broadcast:{row.id}", {"messages_withdrawn": count}, now
    )
    return count


def api_broadcast_problems(session: Session, workspace: WorkspaceDef) -> list[tuple[str, int | None, str]]:
    """What a workspace file about to be applied does to the API's broadcasts, as (key path in the
    file or None, broadcast index in the file or None, message): a file broadcast may not take an
    API broadcast's id, and a pending one's template, mailbox and audience must still resolve."""
    problems: list[tuple[str, int | None, str]] = []
    rows = session.scalars(
        select(ApiBroadcast)
        .where(ApiBroadcast.workspace_id == workspace.workspace.id)
        .order_by(ApiBroadcast.id)
    ).all()
    by_id = {row.id: row for row in rows}
    for index, item in enumerate(workspace.broadcasts):
        if item.id in by_id:
            problems.append(
                (
                    f"broadcasts[{index}].id",
                    index,
                    f"'{item.id}' is the id of a broadcast made through the API; choose another id",
                )
            )
    file_ids = {item.id for item in workspace.broadcasts}
    for row in rows:
        if row.status == "canceled" or row.id in file_ids:
            continue
        run = _run(session, row.workspace_id, row.id)
        if run is not None and run.status == "finished":
            continue
        try:
            _checked_definition(row.definition, workspace)
        except WorkspaceInvalid as exc:
            for problem in exc.problems:
                where = "" if problem.path == TOP else f" {problem.path}:"
                problems.append(
                    (
                        "broadcasts",
                        None,
                        f"the broadcast '{row.id}' made through the API:{where} {problem.message}",
                    )
                )
    return problems


# -- test messages ------------------------------------------------------------------------------


@dataclass
class PreparedTest:
    """A test message built, not yet recorded; ``data`` (the bytes for the wire, DKIM-signed as the
    outbox would sign them) is set when it goes out through SMTP."""

    message: Message
    data: bytes | None = None
    envelope_from: str | None = None


def prepare_test(
    ctx: Ctx,
    broadcast_id: str,
    definition: Mapping[str, Any],
    to: str,
    contact: ContactView | None,
    *,
    smtp: bool,
) -> PreparedTest:
    """Render the broadcast for ``contact`` (or a stand-in with only the address) and address it
    to ``to``; links in it act on no one (contact id 0). Raises WorkspaceInvalid."""
    try:
        recipient = normalize_email(to)
    except InvalidAddress as exc:
        raise _invalid("to", str(exc)) from None
    workspace = ctx.workspace
    template = workspace.templates.get(str(definition.get("template")))
    if not isinstance(template, EmailTemplate):
        raise _invalid("template", f"the workspace has no email template {definition.get('template')!r}")
    chosen = definition.get("mailbox")
    mailbox = workspace.mailbox(str(chosen)) if chosen is not None else workspace.default_mailbox
    if mailbox is None:
        raise _invalid("mailbox", "the workspace has no mailbox to send it from")
    key = f"test:broadcast:{broadcast_id}:{uuid.uuid4().hex[:12]}"
    view = replace(contact, id=0) if contact is not None else ContactView(id=0, email=recipient)
    settings = workspace.workspace
    unsubscribe = unsubscribe_url(ctx, key, 0, None)
    render = RenderContext(
        contact=view,
        workspace_name=settings.name,
        physical_address=settings.physical_address or "",
        unsubscribe_url=unsubscribe,
        link_url=lambda name: link_url(ctx, key, 0, name),
    )
    try:
        rendered = render_email(template, render)
    except MissingVariable as exc:
        hint = "" if contact is not None else "; give `contact` to render it as one of your contacts"
        raise _invalid("template", f"{exc}{hint}") from None
    except RenderFailure as exc:
        raise _invalid("template", exc.message) from None
    domain = parseaddr(mailbox.from_)[1].rsplit("@", 1)[-1]
    message = Message(
        workspace_id=ctx.workspace_id,
        key=key,
        contact_id=0,
        channel="email",
        recipient=recipient,
        sender=mailbox.from_,
        mailbox=mailbox.id,
        template=str(definition.get("template")),
        subject=f"[Test] {rendered.subject}",
        body_text=rendered.text,
        body_html=rendered.html,
        message_id=f"<{key.replace(':', '.')}.{ctx.workspace_id}@{domain}>",
        status="captured",
        created_at=ctx.now,
        attempts=0,
    )
    prepared = PreparedTest(message)
    if smtp:
        # Signed like the real thing (docs/delivery.md, "DKIM"), so a test to a DKIM checker tells
        # the truth; a key that cannot be had is a DkimConfigError, the request's answer.
        signers = signers_for(workspace.delivery)
        try:
            data = build_message(message, workspace, date=ctx.now, unsubscribe_url=unsubscribe).as_bytes()
            prepared.envelope_from = envelope_sender(message, workspace)
            prepared.data = sign_from(signers, prepared.envelope_from, data)
        except (UnsafeHeader, SigningFailed) as exc:
            raise _invalid("template", f"the message cannot be built: {exc}") from None
    return prepared


def deliver_test(prepared: PreparedTest, transport: Transport, now: datetime) -> None:
    """Hand the test message to the SMTP server now (outside any transaction) and note the outcome
    on it: ``sent``, or ``failed`` with the server's answer. Never retried: it is a test."""
    assert prepared.data is not None and prepared.envelope_from is not None
    data, sender, recipient = prepared.data, prepared.envelope_from, prepared.message.recipient

    async def send() -> None:
        try:
            await transport.send(data, sender, [recipient])
        finally:
            await transport.close()

    message = prepared.message
    message.attempts = 1
    try:
        asyncio.run(send())
    except SendFailure as exc:
        message.status, message.last_error = "failed", str(exc)
        return
    message.status, message.sent_at = "sent", now


def smtp_transport(workspace: WorkspaceDef, virtual_clock: bool) -> Transport | None:
    """The workspace's SMTP transport, or None: the capture outbox (no SMTP, or a simulation)."""
    if virtual_clock:
        return None
    return transport_for(workspace.delivery)
