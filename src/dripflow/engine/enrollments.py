"""Entering, leaving and moving enrollments (SPEC S1–S5, S7, S12, S13, T9).

The rules are decided in :mod:`dripflow.core.states` and :mod:`dripflow.core.timing`; this module
reads what they need from the store and writes what they decide, with a journal record for each.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dripflow.core.contact_view import OPEN_STATUSES, ContactView
from dripflow.core.model import Sequence as SequenceDef
from dripflow.core.modeltypes import WEEKDAYS
from dripflow.core.states import PriorEnrollment, enrollment_refusal, next_step
from dripflow.core.steps_model import StepNode
from dripflow.core.timing import (
    Delay,
    StepTiming,
    TimingContext,
    date_step_due,
    field_date_step_due,
    step_due,
)
from dripflow.engine.context import Ctx
from dripflow.store.contacts import ContactRepo
from dripflow.store.database import is_postgresql
from dripflow.store.tables import Contact, Enrollment, StepRun
from dripflow.store.views import load_views

_TICK = timedelta(microseconds=1)
# A wait_until step with no timeout waits "forever": this deadline marks it as waiting (S8).
FOREVER = datetime(9999, 12, 31, tzinfo=UTC)

__all__ = [
    "FOREVER",
    "close",
    "enroll",
    "flush_enrollments",
    "note_step_run",
    "open_enrollments",
    "preload_step_runs",
    "ran_steps",
    "schedule_next",
    "step_cascade",
    "sync_lead_status",
    "timing_context",
    "timing_of",
    "write_claimed",
]


def timing_context(ctx: Ctx, sequence: SequenceDef, contact: ContactView) -> TimingContext:
    """The zone and settings a sequence's times are read in (T1): explicit, `contact` or workspace."""
    settings = ctx.workspace.workspace
    zone_name = sequence.timezone
    if zone_name == "workspace":
        zone_name = settings.timezone
    elif zone_name == "contact":
        zone_name = contact.timezone or settings.timezone
    return TimingContext(
        zone=ZoneInfo(zone_name),
        default_send_time=settings.default_send_time,
        step_slots=settings.step_slots,
        date_step_grace=settings.date_step_grace,
    )


def timing_of(step: StepNode) -> StepTiming:
    weekdays = frozenset(WEEKDAYS.index(day) for day in step.days) if step.days else None
    after = step.after
    return StepTiming(
        after=Delay(days=after.days, hours=after.hours, minutes=after.minutes), at=step.at, weekdays=weekdays
    )


# Hot statements, built once (composing a SELECT costs more than running it on SQLite).
_PRIOR = select(Enrollment.sequence_id, Enrollment.status, Enrollment.closed_at).where(
    Enrollment.workspace_id == bindparam("workspace_id"), Enrollment.contact_id == bindparam("contact_id")
)
_STEP_RUNS = select(StepRun.enrollment_id, StepRun.step_id, StepRun.occurrence).where(
    StepRun.enrollment_id.in_(bindparam("ids", expanding=True))
)


def enroll(
    ctx: Ctx,
    contact: ContactView,
    sequence_id: str,
    *,
    by: str,
    cascade: tuple[str, int] | None = None,
) -> Enrollment | None:
    """Enroll the contact, or record why not (`not_enrolled`, SPEC §6). ``by`` names the cause;
    ``cascade``: the (originating event, depth) of the cascade that enrolls it, if any (A3)."""
    sequence = ctx.rules.sequence(sequence_id)
    status = ctx.rules.statuses.get(sequence_id, "archived")
    if sequence is None:
        ctx.log("not_enrolled", contact, sequence=sequence_id, reason="sequence_archived", by=by)
        return None
    flush_enrollments(ctx.session)  # the prior enrollments as they stand, read as plain rows (hot path)
    params = {"workspace_id": ctx.workspace_id, "contact_id": contact.id}
    prior = [PriorEnrollment(*row) for row in ctx.session.connection().execute(_PRIOR, params)]
    refusal = enrollment_refusal(ctx.workspace, sequence, status, contact, prior, ctx.now)
    if refusal is not None:
        reason, detail = refusal
        ctx.log("not_enrolled", contact, sequence=sequence_id, reason=reason, detail=detail, by=by)
        return None
    now = ctx.now
    row = Enrollment(
        workspace_id=ctx.workspace_id,
        contact_id=contact.id,
        sequence_id=sequence_id,
        open_key=sequence_id,
        status="draft" if status == "draft" else ("paused" if status == "paused" else "active"),
        base_at=now,
        loops=0,
        runs=0,
        enrolled_at=now,
        paused_at=now if status == "paused" else None,
        cascade_origin=cascade[0] if cascade is not None else None,
        cascade_depth=cascade[1] if cascade is not None else None,
        cascade_fired=_fired_in(ctx, cascade[0], contact.id) if cascade is not None else None,
    )
    # A step sequence's first step is known before the row is written: its schedule goes into the
    # INSERT (one statement, not an INSERT and an UPDATE: hot path). Anything else (a date sequence,
    # nothing left to run) is scheduled below, after the enrollment is recorded.
    first = next_step(sequence, None, frozenset()) if sequence.kind != "date" else None
    if first is not None:
        row.next_step = first.id
        row.due_at = row.step_due_at = step_due(timing_of(first), timing_context(ctx, sequence, contact), now)
    if not _insert_enrollment(ctx, row):  # another worker enrolled the same contact a moment ago (S1)
        ctx.log("not_enrolled", contact, sequence=sequence_id, reason="already_enrolled", by=by)
        return None
    ctx.step_runs[row.id] = set()  # a new enrollment has run nothing: no query needed
    ctx.log("enrollment.status", contact, sequence=sequence_id, status=row.status, by=by)
    if contact.lead_status == "inactive":
        sync_lead_status(ctx, contact, active=True)
    if first is None:
        schedule_next(ctx, row, sequence, contact, base=now, last_step=None)
    return row


def _insert_enrollment(ctx: Ctx, row: Enrollment) -> bool:
    """Insert, or False when the open-enrollment key is taken (S1). Only PostgreSQL can race here:
    SQLite writers are serialised (BEGIN IMMEDIATE), so its check above already decided."""
    ctx.session.add(row)
    if not is_postgresql(ctx.session.get_bind().engine):
        ctx.session.flush()
        return True
    try:
        with ctx.session.begin_nested():
            ctx.session.flush()
    except IntegrityError:
        return False
    return True


def schedule_next(
    ctx: Ctx,
    row: Enrollment,
    sequence: SequenceDef,
    contact: ContactView,
    *,
    base: datetime,
    last_step: str | None,
    done: frozenset[str] | None = None,
) -> None:
    """Point the enrollment at its next step and its due time, or mark it finished (S7, S13, T3–T8)."""
    row.last_step = last_step
    row.base_at = base
    row.wait_deadline = None
    if sequence.kind == "date":
        _schedule_date_step(ctx, row, sequence, contact)
        return
    if done is None:
        # Gotos re-run steps on purpose (S8); otherwise a step already run is never run again (S7).
        done = frozenset() if row.loops else frozenset(_done_steps(ctx, row))
    step = next_step(sequence, last_step, done)
    if step is None:
        _finish(ctx, row, contact)
        return
    row.next_step = step.id
    row.due_at = row.step_due_at = step_due(timing_of(step), timing_context(ctx, sequence, contact), base)
    if row.status == "finished":
        set_status(ctx, row, contact, "active")


def _schedule_date_step(ctx: Ctx, row: Enrollment, sequence: SequenceDef, contact: ContactView) -> None:
    """Date sequences (T7): the earliest step occurrence not yet run; none left means finished."""
    tctx = timing_context(ctx, sequence, contact)
    ran = ran_steps(ctx, row)
    ran_ids = {step_id for step_id, _ in ran}
    best: tuple[datetime, int, str] | None = None
    for index, step in enumerate(sequence.steps):
        if not step.active or step.on is None:
            continue
        due = date_occurrence(step, contact, tctx, row.base_at)
        if due is None or (not step.annually and step.id in ran_ids):
            continue
        while due is not None and step.annually and (step.id, f"{step.id}@{due.date().isoformat()}") in ran:
            due = date_occurrence(step, contact, tctx, due + tctx.date_step_grace + _TICK)
        if due is None:
            continue
        if best is None or (due, index) < best[:2]:
            best = (due, index, step.id)
    if best is None:
        _finish(ctx, row, contact)
        return
    row.next_step = best[2]
    row.due_at = row.step_due_at = best[0]


def date_occurrence(
    step: StepNode, contact: ContactView, tctx: TimingContext, after: datetime
) -> datetime | None:
    """When a dated step next falls (T7); annual ones from ``after`` minus the grace window (T8)."""
    anchor = step.on
    if anchor is None:
        return None
    if anchor.on_date is not None:
        if step.annually:
            return field_date_step_due(anchor.on_date, 0, True, step.at, tctx, after)
        return date_step_due(anchor.on_date, step.at, tctx)
    raw = contact.fields.get(anchor.field_key or "")
    if raw is None:
        return None
    try:
        value = raw if isinstance(raw, date) else date.fromisoformat(str(raw))
    except ValueError:
        return None
    offset = anchor.offset.days if anchor.offset is not None else 0
    return field_date_step_due(value, offset, step.annually, step.at, tctx, after)


def _done_steps(ctx: Ctx, row: Enrollment) -> set[str]:
    return {step_id for step_id, _occurrence in ran_steps(ctx, row)}


def ran_steps(ctx: Ctx, row: Enrollment) -> set[tuple[str, str]]:
    """The (step, occurrence) pairs this enrollment has run: from the batch cache, else one query."""
    if row.id is None:
        return set()
    cached = ctx.step_runs.get(row.id)
    if cached is None:
        preload_step_runs(ctx, [row.id])
        cached = ctx.step_runs[row.id]
    return cached


def flush_enrollments(session: Session) -> None:
    """Write pending enrollment changes before reading enrollments as plain rows; other pending
    changes (a contact's lead status) wait for the next flush (one flush fewer: hot path)."""
    if any(isinstance(item, Enrollment) for item in (*session.new, *session.dirty, *session.deleted)):
        session.flush()


# What the scheduler changes in an enrollment it runs (the rest is set when it is made).
_STATE_COLUMNS = frozenset(
    {"open_key", "status", "reason", "next_step", "last_step", "base_at", "due_at", "step_due_at",
     "wait_deadline", "paused_at", "mailbox", "loops", "runs", "finished_at", "closed_at"}
)  # fmt: skip
_ENROLLMENTS = cast(Table, Enrollment.__table__)
_WRITE_STATE = update(_ENROLLMENTS).where(_ENROLLMENTS.c.id == bindparam("_id"))


def write_claimed(ctx: Ctx, rows: list[Enrollment]) -> None:
    """Write the new state of a batch's enrollments with one ``executemany`` per set of changed
    columns (hot path: the unit of work's flush costs more than its statements), then let the
    session forget them, as a flush would leave them clean. What the unit of work would write is
    written: the columns the scheduler changed, as the object holds them (the claim's rows: locked
    on PostgreSQL; SQLite has one writer). An enrollment with another change is left to the
    session's flush."""
    groups: dict[tuple[str, ...], list[dict[str, object]]] = {}
    written: list[Enrollment] = []
    for row in rows:
        state = inspect(row)
        changed = state.committed_state
        if not changed or not state.persistent or not _STATE_COLUMNS.issuperset(changed):
            continue
        held = state.dict
        if not all(name in held for name in changed):  # expired meanwhile: the flush knows better
            continue
        names = tuple(sorted(changed))
        values: dict[str, object] = {name: held[name] for name in names}
        values["_id"] = row.id
        groups.setdefault(names, []).append(values)
        written.append(row)
    if not written:
        return
    connection = ctx.session.connection()
    for params in groups.values():
        connection.execute(_WRITE_STATE, params[0] if len(params) == 1 else params)
    for row in written:
        ctx.session.expunge(row)


def preload_step_runs(ctx: Ctx, enrollment_ids: list[int]) -> None:
    """Load the step runs of a whole claimed batch in one query (no round trip per step)."""
    enrollment_ids = [item for item in enrollment_ids if item not in ctx.step_runs]
    for enrollment_id in enrollment_ids:
        ctx.step_runs[enrollment_id] = set()
    if not enrollment_ids:
        return
    ctx.write_deferred()  # step runs are deferred plain rows (steps._record), not ORM objects
    rows = ctx.session.connection().execute(_STEP_RUNS, {"ids": enrollment_ids})
    for enrollment_id, step_id, occurrence in rows:
        ctx.step_runs[enrollment_id].add((step_id, occurrence))


def note_step_run(ctx: Ctx, row: Enrollment, step_id: str, occurrence: str) -> None:
    """Keep the batch cache current when a step run is written."""
    if row.id is not None and row.id in ctx.step_runs:
        ctx.step_runs[row.id].add((step_id, occurrence))


def _finish(ctx: Ctx, row: Enrollment, contact: ContactView) -> None:
    row.next_step = None
    row.due_at = None
    if row.finished_at is None or row.status != "finished":
        row.finished_at = ctx.now
        set_status(ctx, row, contact, "finished")
        from dripflow.engine.triggers import emit

        origin, depth = step_cascade(ctx, row, f"enrollment:{row.id}")
        emit(ctx, "sequence.finished", contact.id, {"sequence": row.sequence_id}, origin=origin, depth=depth)


def _fired_in(ctx: Ctx, origin: str, contact_id: int) -> list[str]:
    return sorted(automation for automation, fired_origin, fired_for in ctx.fired
                  if fired_origin == origin and fired_for == contact_id)  # fmt: skip


def step_cascade(ctx: Ctx, row: Enrollment, own: str) -> tuple[str, int]:
    """The cascade a step's events belong to (A3).

    A step due at the very moment an automation or start rule made the enrollment continues that
    cascade, even when it runs in a later pass or on another worker: the automations that already
    ran in it are known again and do not run twice, and the depth goes on counting. So a loop
    through a sequence with no delay ends like any other cascade. A later step starts a cascade of
    its own, ``own``.
    """
    due = row.step_due_at
    origin, depth = row.cascade_origin, row.cascade_depth
    if origin is None or depth is None or due is None or due > row.enrolled_at:
        return own, 0
    ctx.fired.update((automation, origin, row.contact_id) for automation in row.cascade_fired or ())
    return origin, depth


def set_status(
    ctx: Ctx, row: Enrollment, contact: ContactView, status: str, reason: str | None = None
) -> None:
    """Change an enrollment's status and journal it (SPEC §6); unchanged status and reason log nothing."""
    if row.status == status and row.reason == reason:
        return
    row.status = status
    row.reason = reason
    ctx.log("enrollment.status", contact, sequence=row.sequence_id, status=status, reason=reason)


def close(ctx: Ctx, row: Enrollment, contact: ContactView, status: str, reason: str) -> None:
    """Close an open enrollment (completed, canceled, excluded, bounced): it leaves the sequence (S1)."""
    row.open_key = None
    row.closed_at = ctx.now
    row.due_at = None
    set_status(ctx, row, contact, status, reason)
    sync_lead_status(ctx, contact)


def sync_lead_status(ctx: Ctx, contact: ContactView, *, active: bool | None = None) -> None:
    """L1 after the contact's lists or enrollments changed; the change is journaled. ``active``:
    the caller knows the answer (it just subscribed or enrolled the contact), so no query."""
    row = ctx.session.get(Contact, contact.id)
    if row is None:
        return
    repo = ContactRepo(ctx.session, ctx.workspace_id, clock=ctx.clock)
    status = repo.derive_lead_status(row, ctx.now, known=active)
    if status is not None:
        ctx.log("contact.status", contact, status=status)


def open_enrollments(ctx: Ctx, contact_id: int, sequence_id: str | None = None) -> list[Enrollment]:
    stmt = select(Enrollment).where(
        Enrollment.workspace_id == ctx.workspace_id,
        Enrollment.contact_id == contact_id,
        Enrollment.open_key.is_not(None),
    )
    if sequence_id is not None:
        stmt = stmt.where(Enrollment.sequence_id == sequence_id)
    return list(ctx.session.scalars(stmt.order_by(Enrollment.id)))


def refresh_view(ctx: Ctx, contact_id: int) -> ContactView | None:
    """A fresh view of one contact, after the engine changed it."""
    ctx.write_deferred()
    ctx.session.flush()
    return load_views(ctx.session, ctx.workspace_id, [contact_id]).get(contact_id)


def mark_due_now(ctx: Ctx, contact_id: int) -> None:
    """Waiting and blocked enrollments re-check at once after the contact changed (S8, S11)."""
    ctx.session.execute(
        update(Enrollment)
        .where(
            Enrollment.workspace_id == ctx.workspace_id,
            Enrollment.contact_id == contact_id,
            Enrollment.open_key.is_not(None),
            Enrollment.status.in_(("active", "blocked")),
            (Enrollment.wait_deadline.is_not(None)) | (Enrollment.status == "blocked"),
        )
        .values(due_at=ctx.now)
        .execution_options(synchronize_session="fetch")
    )


assert "finished" in OPEN_STATUSES  # S13: a finished enrollment is still in its sequence
