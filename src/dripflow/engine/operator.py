"""What the HTTP API asks of the engine on one workspace (issue 6), each in the caller's transaction.

Every operation is the operator command of SPEC X2 it stands for, done by the same engine
functions: enrolling is ``admin.enroll`` (:func:`~dripflow.engine.enrollments.enroll`), unenrolling
``admin.unenroll`` (closed ``canceled``, ``manual``), replacing a sequence
``admin.sequence.update`` (:func:`~dripflow.engine.ingest.update_sequence`, S7/T9). So a change made
over HTTP is journaled, explained and simulated like any other; the API only adds the checks and
answers an HTTP client needs (what was refused and why, what changed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dripflow.core.clock import Clock
from dripflow.core.contact_view import ContactView
from dripflow.core.model import Workspace as WorkspaceDef
from dripflow.core.validate import parse_sequence
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.enrollments import close, enroll, refresh_view
from dripflow.engine.ingest import follow_live_edit, update_sequence
from dripflow.engine.steps import Caps, run_enrollment
from dripflow.engine.triggers import drain
from dripflow.explain import _sentence as journal_sentence
from dripflow.store.contacts import ContactRepo
from dripflow.store.database import is_postgresql
from dripflow.store.events import AuditLog
from dripflow.store.tables import Contact, Enrollment, JournalEntry, Sequence
from dripflow.store.workspaces import (
    ApplyReport,
    apply_workspace,
    current_versions,
    definition_hash,
    rules_key,
)

__all__ = [
    "Refusal",
    "SequenceChange",
    "apply_live",
    "archive_sequence",
    "engine_ctx",
    "enroll_contact",
    "find_contact",
    "put_sequence",
    "retry_enrollment",
    "unenroll",
]

_MAX_ID = 2**63 - 1  # BIGINT: a longer number names no contact (and must not reach the database)


def engine_ctx(session: Session, workspace_id: str, clock: Clock) -> Ctx:
    return Ctx(session, workspace_id, load_rules(session, workspace_id), clock)


def _settle(ctx: Ctx) -> None:
    """What `ingest` does after a command: the events it caused run, the journal is written."""
    drain(ctx)
    ctx.session.flush()
    ctx.flush_journal()


def find_contact(session: Session, workspace_id: str, ref: str) -> Contact | None:
    """A contact by email or id, or None, also for a malformed email or an id too large to exist."""
    text = ref.strip()
    if text.isascii() and text.isdigit() and int(text) > _MAX_ID:
        return None
    try:
        return ContactRepo(session, workspace_id).get(text)
    except ValueError:  # InvalidAddress, or an address no codec can read
        return None


# -- sequences ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceChange:
    created: bool
    changed: bool
    version: int


def _live_workspace(ctx: Ctx) -> WorkspaceDef:
    """The workspace with its sequences as they are live (API edits included, archived left out),
    so that a definition may name a sequence created through the API."""
    live = tuple(
        sequence
        for sequence_id, sequence in sorted(ctx.rules.sequences.items())
        if ctx.rules.statuses.get(sequence_id) != "archived"
    )
    return ctx.workspace.model_copy(update={"sequences": live})


def put_sequence(ctx: Ctx, definition: Mapping[str, Any], actor: str) -> SequenceChange:
    """Create or replace a sequence as ``admin.sequence.update`` does (S7, T9); an unchanged
    definition writes nothing. Raises ``WorkspaceInvalid`` with the validator's problems."""
    live = _live_workspace(ctx)
    parsed = parse_sequence(definition, live, source="request")
    document = parsed.model_dump(mode="json")
    head = ctx.session.get(Sequence, (ctx.workspace_id, parsed.id))
    if head is not None:
        current = current_versions(ctx.session, ctx.workspace_id).get(parsed.id)
        same = current is not None and current.definition_hash == definition_hash(document)
        if same and head.status == parsed.status:
            return SequenceChange(created=False, changed=False, version=head.current_version)
    ctx.rules = replace(ctx.rules, workspace=live)  # update_sequence checks against it again
    update_sequence(ctx, document)
    _settle(ctx)
    head = ctx.session.get(Sequence, (ctx.workspace_id, parsed.id))
    assert head is not None
    created = head.current_version == 1
    AuditLog(ctx.session, ctx.workspace_id).record(
        actor,
        "sequence.created" if created else "sequence.versioned",
        parsed.id,
        {"version": head.current_version},
        ctx.now,
    )
    return SequenceChange(created=created, changed=True, version=head.current_version)


def archive_sequence(ctx: Ctx, sequence_id: str, actor: str) -> bool:
    """Archive a sequence as removing it from the file does: no new enrollments
    (``sequence_archived``); contacts inside go on. False: it already was."""
    head = ctx.session.get(Sequence, (ctx.workspace_id, sequence_id))
    if head is None:
        raise LookupError(sequence_id)
    if head.status == "archived":
        return False
    head.status = "archived"
    head.updated_at = ctx.now
    ctx.session.flush()
    ctx.session.info.pop(rules_key(ctx.workspace_id), None)
    AuditLog(ctx.session, ctx.workspace_id).record(
        actor, "sequence.archived", sequence_id, {"reason": "archived through the API"}, ctx.now
    )
    return True


# -- enrollments --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a contact was not enrolled (SPEC §6 ``not_enrolled``), as the journal and explain say it."""

    reason: str
    detail: str | None
    sentence: str


def enroll_contact(ctx: Ctx, contact_id: int, sequence_id: str) -> Enrollment | Refusal:
    """``admin.enroll``: the new enrollment, or the refusal the engine recorded (it stays in the
    journal: explain tells it)."""
    contact = _view(ctx, contact_id)
    row = enroll(ctx, contact, sequence_id, by="api")
    _settle(ctx)
    if row is not None:
        return row
    record = ctx.session.scalars(
        select(JournalEntry)
        .where(
            JournalEntry.workspace_id == ctx.workspace_id,
            JournalEntry.kind == "not_enrolled",
            JournalEntry.contact_id == contact_id,
            JournalEntry.data["sequence"].as_string() == sequence_id,
        )
        .order_by(JournalEntry.id.desc())
        .limit(1)
    ).one()
    data = dict(record.data)
    detail = data.get("detail")
    return Refusal(
        str(data.get("reason")), str(detail) if detail is not None else None, journal_sentence(data)
    )


def unenroll(ctx: Ctx, row: Enrollment) -> None:
    """``admin.unenroll``: the enrollment closes ``canceled``, ``manual`` (it is kept, closed)."""
    close(ctx, row, _view(ctx, row.contact_id), "canceled", "manual")
    _settle(ctx)


def retry_enrollment(ctx: Ctx, row: Enrollment) -> None:
    """S11 "on request": a blocked enrollment tries its step again now, as the worker would."""
    if is_postgresql(ctx.session.get_bind().engine):
        # Held until commit: a worker's claim (SKIP LOCKED) passes it over meanwhile.
        ctx.session.execute(select(Enrollment.id).where(Enrollment.id == row.id).with_for_update())
        ctx.session.refresh(row)
    if row.status != "blocked":
        return
    row.due_at = ctx.now
    run_enrollment(ctx, row, _view(ctx, row.contact_id), Caps())
    _settle(ctx)


def _view(ctx: Ctx, contact_id: int) -> ContactView:
    view = refresh_view(ctx, contact_id)
    if view is None:
        raise LookupError(f"no contact {contact_id}")
    return view


# -- the workspace ------------------------------------------------------------------------------


def apply_live(session: Session, model: WorkspaceDef, clock: Clock, actor: str) -> ApplyReport:
    """`apply`, with live sequences changing as by ``admin.sequence.update`` (SPEC §10): contacts
    inside a changed sequence keep their place by step id (S7) and finished ones reach appended
    steps (T9). Unchanged: nothing is written."""
    workspace_id = model.workspace.id
    before = load_rules(session, workspace_id)
    report = apply_workspace(session, model, now=clock.now(), actor=actor)
    if report.sequences_versioned:
        ctx = engine_ctx(session, workspace_id, clock)
        for sequence_id, _version in report.sequences_versioned:
            new = ctx.rules.sequence(sequence_id)
            if new is not None:
                follow_live_edit(ctx, before.sequence(sequence_id), new)
        _settle(ctx)
    return report
