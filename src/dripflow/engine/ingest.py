"""Events in (SPEC X2): the contact they name is created or updated, the event is recorded once
(D3), its state change or fact is applied, and the triggers it sets off run (§3).

Operator commands (``admin.*``) arrive in the same form and are handled here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select

from dripflow.core.contact_view import ContactView
from dripflow.core.errors import UserError
from dripflow.core.model import EmailTemplate, parse_sequence
from dripflow.core.model import Sequence as SequenceDef
from dripflow.core.modeltypes import unknown_name
from dripflow.core.states import repoint_last_step
from dripflow.core.timing import appended_step_due, resume_due
from dripflow.core.triggers_model import EVENT_TYPES
from dripflow.core.validate import WorkspaceInvalid
from dripflow.engine.context import KEY_FIELDS, Ctx
from dripflow.engine.enrollments import (
    close,
    enroll,
    open_enrollments,
    refresh_view,
    schedule_next,
    set_status,
    sync_lead_status,
    timing_context,
    timing_of,
)
from dripflow.engine.messages import latest_message
from dripflow.engine.triggers import drain, emit
from dripflow.store.contacts import ContactData, ContactRepo
from dripflow.store.events import EventLog
from dripflow.store.tables import (
    Contact,
    Enrollment,
    Fact,
    LeadStatus,
    Message,
    Sequence,
    SequenceVersion,
    Task,
)
from dripflow.store.views import new_contact_view
from dripflow.store.workspaces import definition_hash, rules_key

__all__ = ["ADMIN_TYPES", "IngestError", "follow_live_edit", "ingest", "update_sequence"]

ADMIN_TYPES = (
    "admin.enroll",
    "admin.unenroll",
    "admin.sequence.pause",
    "admin.sequence.resume",
    "admin.sequence.update",
    "admin.contact.update",
    "admin.contact.blacklist",
    "admin.contact.whitelist",
    "admin.task.complete",
)
_STATE_EVENTS = {"list.subscribed", "list.unsubscribed", "tag.assigned", "tag.removed", "unsubscribed"}


class IngestError(UserError):
    """An event that cannot be applied; the message names what is wrong with it."""


@dataclass(frozen=True)
class Outcome:
    applied: bool
    contact_id: int | None


def ingest(ctx: Ctx, event: dict[str, Any]) -> Outcome:
    """Apply one X2 event (its ``at`` is the context clock's now)."""
    kind = event.get("type")
    if not isinstance(kind, str) or (kind not in EVENT_TYPES and kind not in ADMIN_TYPES):
        raise IngestError(f"unknown event type {kind!r}")
    # The row is kept while the event is applied: the session holds its objects only weakly, and
    # looking it up again would cost a SELECT (hot path).
    contact, row = _contact(ctx, event)
    fields = {k: v for k, v in event.items() if k not in ("at", "type", "contact", "id")}
    key = event.get("id")
    if key is not None:
        _, inserted = EventLog(ctx.session, ctx.workspace_id).append(
            kind, fields, contact.id if contact else None, ctx.now, ctx.now, str(key)
        )
        if not inserted:
            return Outcome(False, contact.id if contact else None)
    if kind.startswith("admin."):
        _admin(ctx, kind, event, contact, row)
    elif contact is not None and row is not None:
        _event(ctx, kind, fields, contact, row)
    drain(ctx)
    ctx.session.flush()
    ctx.flush_journal()
    return Outcome(True, contact.id if contact else None)


def _contact(ctx: Ctx, event: dict[str, Any]) -> tuple[ContactView, Contact] | tuple[None, None]:
    """The contact an event names, created or updated; bad contact data is the event's fault."""
    try:
        return _contact_of(ctx, event)
    except (ValueError, TypeError) as exc:  # an empty email, a bad address or field (from the store)
        raise IngestError(f"contact: {exc}") from None


def _contact_of(ctx: Ctx, event: dict[str, Any]) -> tuple[ContactView, Contact] | tuple[None, None]:
    given = event.get("contact")
    if given is None:
        if event.get("type", "").startswith("admin.sequence"):
            return None, None
        raise IngestError("the event names no contact")
    repo = ContactRepo(ctx.session, ctx.workspace_id, clock=ctx.clock)
    if isinstance(given, str):
        row = repo.get(given)
        created = False
        if row is None:
            if given.strip().isdigit():
                raise IngestError(f"no contact {given}")
            row, created = repo.upsert(ContactData(email=given), at=ctx.now)
    elif isinstance(given, dict):
        known = {
            "email",
            "phone",
            "first_name",
            "last_name",
            "timezone",
            "source",
            "owner",
            "address",
            "fields",
        }
        unknown = set(given) - known
        if unknown:
            raise IngestError(f"unknown contact keys {sorted(unknown)}; expected {sorted(known)}")
        before = repo.get(given["email"]) if given.get("email") else None
        before_state = _state(before)
        # Updated by id, or created: the lookup above is not repeated (hot path).
        if before is None:
            row, created = repo.create(ContactData(**given), at=ctx.now)
        else:
            row, created = repo.upsert(ContactData(**given), contact_id=before.id, at=ctx.now)
        changed = _changed(before_state, _state(row))
        if not created and changed:  # SPEC §3 contact.updated {changed}: each attribute or field key
            emit(ctx, "contact.updated", row.id, {"changed": changed}, origin="event")
    else:
        raise IngestError("contact must be an email or an object with an email")
    if not created:
        fresh = refresh_view(ctx, row.id)
        if fresh is None:
            raise IngestError(f"no contact {row.id}")
        return fresh, row
    ctx.session.flush()  # gives the new row its id
    view = new_contact_view(row)
    # A suppressed address (store.suppressions) starts as it was left when its contact was deleted.
    restored = row.lead_status == "blacklisted" or row.unsubscribed_at is not None
    ctx.log("contact.status", view, status=row.lead_status, reason="suppressed" if restored else "created")
    emit(ctx, "contact.created", row.id, {}, origin="event")
    return view, row


_ATTRIBUTES = ("email", "phone", "first_name", "last_name", "timezone", "source", "owner", "address")


def _state(row: Contact | None) -> dict[str, Any]:
    """The contact's attributes and custom fields by name (a copy: the row changes in place)."""
    if row is None:
        return {}
    return {**{name: getattr(row, name) for name in _ATTRIBUTES}, **dict(row.fields or {})}


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The names of the attributes and fields whose values differ, attributes first."""
    return [name for name in dict.fromkeys([*after, *before]) if before.get(name) != after.get(name)]


def _event(ctx: Ctx, kind: str, fields: dict[str, Any], contact: ContactView, row: Contact) -> None:
    if kind == "contact.created":  # X2: it creates or updates the contact, which was done (and told)
        return
    repo = ContactRepo(ctx.session, ctx.workspace_id, clock=ctx.clock)
    if kind in _STATE_EVENTS:
        changed = _state_event(ctx, kind, fields, contact, row, repo)
        if changed:  # L1: a subscription makes the contact active; anything else is looked up
            sync_lead_status(ctx, contact, active=True if kind == "list.subscribed" else None)
            emit(ctx, kind, contact.id, fields, origin="event", view=_after(kind, fields, contact, row))
            scope = fields.get("scope")
            if kind == "unsubscribed" and scope in ("list", "sequence"):
                # Decision (docs/decisions.md): leaving a list or a sequence on one's own is also that
                # list's or sequence's own event, so `when: {event: list.unsubscribed, list: L}` fires
                # for it as it does for an automation's `unsubscribe_list`.
                name = "list" if scope == "list" else "sequence"
                emit(ctx, f"{name}.unsubscribed", contact.id, {name: fields[name]}, origin="event")
        return
    if kind.startswith("email.") or kind == "link.clicked":
        # S12 `clicked` needs the click's sequence: taken from its message, as for email events
        fields = _email_fields(ctx, contact, fields)
    main = next((name for name in KEY_FIELDS if name in fields), None)
    key = None if kind.startswith("email.") or main is None else str(fields[main])
    detail = {k: v for k, v in fields.items() if k != main or kind.startswith("email.")}
    ctx.session.add(
        Fact(
            workspace_id=ctx.workspace_id,
            contact_id=contact.id,
            kind=kind,
            key=key,
            detail=detail,
            at=ctx.now,
        )
    )
    if kind == "email.bounced" and fields.get("kind", "hard") == "hard":
        _blacklist(ctx, contact, row, "hard_bounce", "bounced", "hard_bounce")
    elif kind == "email.bounced" and _soft_bounces_in_a_row(ctx, contact.id) >= _SOFT_BOUNCE_LIMIT:
        _blacklist(ctx, contact, row, "repeated_soft_bounce", "bounced", "repeated_soft_bounce")
    elif kind == "email.complained":
        _blacklist(ctx, contact, row, "complaint", "canceled", "complaint")
    elif kind == "task.completed":
        _complete_task(ctx, contact, fields)
    elif kind == "link.clicked":
        _link_actions(ctx, contact, fields)
    emit(ctx, kind, contact.id, fields, origin="event")


def _link_actions(ctx: Ctx, contact: ContactView, fields: dict[str, Any]) -> None:
    """SPEC §2 templates: ``links: {NAME: [actions]}`` run when the link NAME of an email built from
    that template is clicked (the email the click names, else the contact's latest, X2)."""
    from dripflow.engine.actions import apply_action

    link, message_id = fields.get("link"), fields.get("message")
    if not isinstance(link, str) or message_id is None:
        return
    name = ctx.session.scalar(
        select(Message.template).where(
            Message.workspace_id == ctx.workspace_id, Message.message_id == str(message_id)
        )
    )
    template = ctx.workspace.templates.get(name) if name is not None else None
    if not isinstance(template, EmailTemplate):
        return
    for action in template.links.get(link, ()):
        view = refresh_view(ctx, contact.id) or contact
        apply_action(ctx, view, action, by=f"link:{name}.{link}", depth=0)


def _after(kind: str, fields: dict[str, Any], contact: ContactView, row: Contact) -> ContactView | None:
    """The contact after a list or tag change, without reloading it; None when it is not that
    simple (a global unsubscribe closes enrollments: reload)."""
    name = fields.get("list") if kind.startswith("list.") else fields.get("tag")
    if not isinstance(name, str):
        return None
    if kind == "list.subscribed":
        return replace(contact, lists=contact.lists | {name}, lead_status=row.lead_status)
    if kind == "list.unsubscribed":
        return replace(contact, lists=contact.lists - {name}, lead_status=row.lead_status)
    if kind == "tag.assigned":
        return replace(contact, tags=contact.tags | {name}, lead_status=row.lead_status)
    if kind == "tag.removed":
        return replace(contact, tags=contact.tags - {name}, lead_status=row.lead_status)
    return None


def _state_event(
    ctx: Ctx, kind: str, fields: dict[str, Any], contact: ContactView, row: Contact, repo: ContactRepo
) -> bool:
    if kind == "list.subscribed":
        return repo.subscribe(row, _declared(ctx, fields, "list"), ctx.now)
    if kind == "list.unsubscribed":
        return repo.unsubscribe(row, _declared(ctx, fields, "list"), ctx.now)
    if kind == "tag.assigned":
        return repo.add_tag(row, _declared(ctx, fields, "tag"), ctx.now)
    if kind == "tag.removed":
        return repo.remove_tag(row, _declared(ctx, fields, "tag"))
    scope = fields.get("scope", "all")
    if scope == "list":
        return repo.unsubscribe(row, _declared(ctx, fields, "list"), ctx.now)
    if scope == "sequence":
        rows = open_enrollments(ctx, contact.id, _declared(ctx, fields, "sequence"))
        for enrollment in rows:
            close(ctx, enrollment, contact, "canceled", "unsubscribed")
        return bool(rows)
    if row.unsubscribed_at is not None:
        return False
    row.unsubscribed_at = ctx.now
    for enrollment in open_enrollments(ctx, contact.id):  # L3: a global unsubscribe cancels them all
        close(ctx, enrollment, contact, "canceled", "unsubscribed")
    return True


def _need(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value:
        raise IngestError(f"the event needs {name!r}")
    return value


def _declared(ctx: Ctx, fields: dict[str, Any], name: str) -> str:
    """A list, tag or sequence the event names, which the workspace must declare (SPEC §2)."""
    value = _need(fields, name)
    declared: dict[str, Iterable[str]] = {
        "list": ctx.workspace.lists,
        "tag": ctx.workspace.tags,
        "sequence": ctx.rules.sequences,
    }
    if value not in declared[name]:
        raise IngestError(unknown_name(name, value, declared[name]))
    return value


def _email_fields(ctx: Ctx, contact: ContactView, fields: dict[str, Any]) -> dict[str, Any]:
    """X2: `message` may be left out (the contact's latest); add its sequence, step and broadcast."""
    given = fields.get("message")
    message: Message | None
    if given is None:
        message = latest_message(ctx, contact.id)
    else:
        message = ctx.session.scalars(
            select(Message).where(
                Message.workspace_id == ctx.workspace_id,
                (Message.message_id == str(given)) | (Message.key == str(given)),
            )
        ).first()
    if message is None:
        return fields
    return {
        **fields,
        "message": message.message_id,
        "sequence": message.sequence_id,
        "step": message.step_id,
        "broadcast": message.broadcast_id,
    }


_SOFT_BOUNCE_LIMIT = 3  # L1: repeated soft bounces, three messages in a row


def _soft_bounces_in_a_row(ctx: Ctx, contact_id: int) -> int:
    """How many of the contact's latest emails, newest first, each soft-bounced (L1)."""
    latest = list(
        ctx.session.scalars(
            select(Message.message_id)
            .where(
                Message.workspace_id == ctx.workspace_id,
                Message.contact_id == contact_id,
                Message.channel == "email",
            )
            .order_by(Message.id.desc())
            .limit(_SOFT_BOUNCE_LIMIT)
        )
    )
    bounced = {
        (fact.get("message"), fact.get("kind"))
        for fact in ctx.session.scalars(
            select(Fact.detail).where(
                Fact.workspace_id == ctx.workspace_id,
                Fact.contact_id == contact_id,
                Fact.kind == "email.bounced",
            )
        )
    }
    count = 0
    for message_id in latest:
        if (message_id, "soft") not in bounced:
            break
        count += 1
    return count


def _blacklist(
    ctx: Ctx, contact: ContactView, row: Contact, reason: str, status: str, close_reason: str
) -> None:
    """L1, L2: blacklisted after a hard bounce or a complaint; open enrollments close."""
    repo = ContactRepo(ctx.session, ctx.workspace_id, clock=ctx.clock)
    if repo.set_lead_status(row, "blacklisted", reason, actor="engine", at=ctx.now):
        ctx.log("contact.status", contact, status="blacklisted", reason=reason)
    for enrollment in open_enrollments(ctx, contact.id):
        close(ctx, enrollment, contact, status, close_reason)


def _complete_task(ctx: Ctx, contact: ContactView, fields: dict[str, Any]) -> None:
    stmt = select(Task).where(
        Task.workspace_id == ctx.workspace_id, Task.contact_id == contact.id, Task.completed_at.is_(None)
    )
    if fields.get("task") is not None:
        stmt = stmt.where(Task.step_id == str(fields["task"]))
    if fields.get("sequence") is not None:
        stmt = stmt.where(Task.sequence_id == str(fields["sequence"]))
    if fields.get("step") is not None:
        stmt = stmt.where(Task.step_id == str(fields["step"]))
    for task in ctx.session.scalars(stmt.order_by(Task.id)):
        task.completed_at = ctx.now
        enrollment = ctx.session.get(Enrollment, task.enrollment_id)
        if enrollment is None or enrollment.open_key is None or enrollment.due_at is not None:
            continue
        if enrollment.last_step != task.step_id:
            continue
        sequence = ctx.rules.sequence(enrollment.sequence_id)
        if sequence is not None:  # S8: the enrollment waited for this task; it goes on from now
            schedule_next(ctx, enrollment, sequence, contact, base=ctx.now, last_step=task.step_id)


# -- operator commands --------------------------------------------------------------------------


def _admin(
    ctx: Ctx, kind: str, event: dict[str, Any], contact: ContactView | None, row: Contact | None
) -> None:
    if kind.startswith("admin.sequence."):
        _sequence_command(ctx, kind, event)
        return
    assert contact is not None and row is not None
    if kind == "admin.enroll":
        sequence_id = _declared(ctx, event, "sequence")
        if enroll(ctx, contact, sequence_id, by="admin") is not None:
            emit(ctx, "sequence.subscribed", contact.id, {"sequence": sequence_id}, origin="admin")
    elif kind == "admin.unenroll":
        for enrollment in open_enrollments(ctx, contact.id, _declared(ctx, event, "sequence")):
            close(ctx, enrollment, contact, "canceled", "manual")
    elif kind == "admin.contact.update":
        emit(ctx, "contact.updated", contact.id, {"changed": None}, origin="admin")
    elif kind == "admin.contact.blacklist":
        repo = ContactRepo(ctx.session, ctx.workspace_id, clock=ctx.clock)
        if repo.set_lead_status(
            row, "blacklisted", event.get("reason") or "manual", actor="admin", at=ctx.now
        ):
            ctx.log("contact.status", contact, status="blacklisted", reason=event.get("reason") or "manual")
        for enrollment in open_enrollments(ctx, contact.id):
            close(ctx, enrollment, contact, "canceled", "manual")
    elif kind == "admin.contact.whitelist":
        reason = event.get("reason")
        if not reason:
            raise IngestError("lifting a blacklisting needs a reason (SPEC L2)")
        active = bool(refresh_view(ctx, contact.id) and (contact.lists or open_enrollments(ctx, contact.id)))
        status: LeadStatus = "active" if active else "inactive"
        repo = ContactRepo(ctx.session, ctx.workspace_id, clock=ctx.clock)
        if repo.set_lead_status(row, status, reason, actor="admin", at=ctx.now):
            ctx.log("contact.status", contact, status=status, reason=reason)
    elif kind == "admin.task.complete":
        _complete_task(ctx, contact, {"sequence": event.get("sequence"), "step": event.get("step")})


def _sequence_command(ctx: Ctx, kind: str, event: dict[str, Any]) -> None:
    if kind == "admin.sequence.update":
        definition = event.get("sequence")
        if not isinstance(definition, dict):
            raise IngestError("admin.sequence.update needs sequence: <full definition>")
        update_sequence(ctx, definition)
        return
    sequence_id = _need(event, "sequence")
    head = ctx.session.get(Sequence, (ctx.workspace_id, sequence_id))
    if head is None:
        raise IngestError(f"no sequence {sequence_id!r}")
    if kind == "admin.sequence.pause":
        head.status = "paused"
        head.updated_at = ctx.now
        _refresh_rules(ctx)
        _pause_enrollments(ctx, sequence_id)
    else:
        head.status = "active"
        head.updated_at = ctx.now
        _refresh_rules(ctx)
        sequence = ctx.rules.sequence(sequence_id)
        assert sequence is not None
        _start_drafts(ctx, sequence_id)
        _resume_enrollments(ctx, sequence)


def _pause_enrollments(ctx: Ctx, sequence_id: str) -> None:
    """S5: every running enrollment of a paused sequence is paused where it stands."""
    for enrollment in _open_rows(ctx, sequence_id):
        if enrollment.status in ("active", "queued", "blocked"):
            enrollment.paused_at = ctx.now
            set_status(ctx, enrollment, _view(ctx, enrollment), "paused")


def _resume_enrollments(ctx: Ctx, sequence: SequenceDef) -> None:
    """S5: paused enrollments go on, timed by the sequence's `resume` rule."""
    for enrollment in _open_rows(ctx, sequence.id):
        if enrollment.status != "paused":
            continue
        contact = _view(ctx, enrollment)
        set_status(ctx, enrollment, contact, "active")
        step = sequence.step(enrollment.next_step) if enrollment.next_step else None
        if enrollment.due_at is not None and step is not None:  # S5
            enrollment.due_at = resume_due(
                enrollment.due_at,
                enrollment.paused_at or ctx.now,
                ctx.now,
                sequence.resume,
                timing_of(step),
                timing_context(ctx, sequence, contact),
            )
        enrollment.paused_at = None


def _start_drafts(ctx: Ctx, sequence_id: str) -> None:
    """§6 `draft`: contacts who entered while the sequence was a draft start when it goes live;
    their first step keeps its time, at once if that has passed (as S5 `continue`)."""
    for enrollment in _open_rows(ctx, sequence_id):
        if enrollment.status != "draft":
            continue
        set_status(ctx, enrollment, _view(ctx, enrollment), "active")
        if enrollment.due_at is not None and enrollment.due_at < ctx.now:
            enrollment.due_at = ctx.now


def _open_rows(ctx: Ctx, sequence_id: str) -> list[Enrollment]:
    return list(
        ctx.session.scalars(
            select(Enrollment)
            .where(
                Enrollment.workspace_id == ctx.workspace_id,
                Enrollment.sequence_id == sequence_id,
                Enrollment.open_key.is_not(None),
            )
            .order_by(Enrollment.id)
        )
    )


def _view(ctx: Ctx, enrollment: Enrollment) -> ContactView:
    view = refresh_view(ctx, enrollment.contact_id)
    assert view is not None
    return view


def _refresh_rules(ctx: Ctx) -> None:
    from dripflow.engine.context import load_rules

    ctx.session.flush()
    ctx.session.info.pop(rules_key(ctx.workspace_id), None)
    ctx.rules = load_rules(ctx.session, ctx.workspace_id)


def update_sequence(ctx: Ctx, definition: dict[str, Any]) -> None:
    """A live edit (S7, T9): a new version; contacts inside keep their place by step id."""
    try:
        parsed = parse_sequence(definition, ctx.workspace)
    except WorkspaceInvalid as exc:
        raise IngestError("; ".join(str(problem) for problem in exc.problems)) from None
    sequence_id = parsed.id
    old = ctx.rules.sequence(sequence_id)
    head = ctx.session.get(Sequence, (ctx.workspace_id, sequence_id))
    document = parsed.model_dump(mode="json")
    if head is None:
        head = Sequence(
            workspace_id=ctx.workspace_id,
            id=sequence_id,
            status=parsed.status,
            current_version=0,
            updated_at=ctx.now,
        )
        ctx.session.add(head)
        ctx.session.flush()
    head.current_version += 1
    head.status = parsed.status
    head.updated_at = ctx.now
    ctx.session.add(
        SequenceVersion(workspace_id=ctx.workspace_id, sequence_id=sequence_id, version=head.current_version,
                        definition=document, definition_hash=definition_hash(document), created_at=ctx.now)
    )  # fmt: skip
    _refresh_rules(ctx)
    follow_live_edit(ctx, old, parsed)


def follow_live_edit(ctx: Ctx, old: SequenceDef | None, parsed: SequenceDef) -> None:
    """After a sequence's definition changed to ``parsed`` (already in ``ctx.rules``): drafts go
    live with it, contacts inside keep their place by step id (S7, T9), and a change of status to
    or from `paused` pauses or resumes them as the operator commands do (S5)."""
    _follow_steps(ctx, old, parsed)
    was = old.status if old is not None else None
    if parsed.status == "paused" and was != "paused":
        _pause_enrollments(ctx, parsed.id)
    elif parsed.status == "active" and was == "paused":
        _resume_enrollments(ctx, parsed)


def _follow_steps(ctx: Ctx, old: SequenceDef | None, parsed: SequenceDef) -> None:
    sequence_id = parsed.id
    if parsed.status == "active":
        _start_drafts(ctx, sequence_id)
    if old is None or parsed.kind != "step":
        return
    old_order = [step.id for step in old.steps]
    new_order = [step.id for step in parsed.steps]
    for enrollment in _open_rows(ctx, sequence_id):
        contact = _view(ctx, enrollment)
        last = repoint_last_step(old_order, new_order, enrollment.last_step)
        if enrollment.status == "finished":
            before = enrollment.due_at
            schedule_next(ctx, enrollment, parsed, contact, base=enrollment.base_at, last_step=last)
            step = parsed.step(enrollment.next_step) if enrollment.next_step else None
            if step is not None and before is None:  # T9: an appended step reaches finished contacts
                enrollment.due_at = appended_step_due(
                    timing_of(step), timing_context(ctx, parsed, contact), enrollment.base_at, ctx.now
                )
            continue
        waiting = enrollment.wait_deadline is not None
        on_task = enrollment.status == "active" and enrollment.due_at is None  # pause_until_complete
        if waiting or on_task or enrollment.status == "blocked":
            continue
        schedule_next(ctx, enrollment, parsed, contact, base=enrollment.base_at, last_step=last)
        if enrollment.due_at is not None and enrollment.due_at < ctx.now:
            enrollment.due_at = ctx.now  # S7: timed from when the last step fired; at once if passed
