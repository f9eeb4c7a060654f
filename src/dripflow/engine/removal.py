"""Deleting contacts: one by hand (``DELETE /v1/contacts/…``) or many by a clean-up (SPEC L5).

A deleted contact's open enrollments are closed first, as ``canceled``, ``contact_deleted`` (SPEC
§6), and journaled; its queued messages are canceled and the deletion is audited. Its lists, tags,
facts and enrollments go with it (the database's cascade); the event log and the outbox keep their
history; a blacklisting or a global unsubscribe stays with its address as a suppression
(:mod:`dripflow.store.suppressions`).

A clean-up (:func:`clean_up`) judges contacts page by page with :func:`dripflow.core.cleanup.judge`
and, when asked to apply, deletes each page's targets in that page's transaction: a crash loses
nothing half-deleted, and running it again carries on where it stopped. Its targets are in no open
enrollment (L1, L2), so they are deleted in bulk; one that is (a race with an enrollment) goes
through :func:`delete_contact` like a deletion by hand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from dripflow.core.cleanup import Candidate, CleanupRequest, Verdict, judge
from dripflow.core.clock import Clock
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.enrollments import open_enrollments, refresh_view, set_status
from dripflow.store.cleanup import cancel_queued, delete_contacts, find_candidates, with_open_enrollments
from dripflow.store.contacts import ContactRepo
from dripflow.store.database import transaction
from dripflow.store.events import AuditLog
from dripflow.store.suppressions import remember
from dripflow.store.tables import Contact

__all__ = ["PAGE_SIZE", "CleanupReport", "OnVerdict", "clean_up", "delete_contact"]

PAGE_SIZE = 500


def delete_contact(ctx: Ctx, row: Contact, actor: str) -> tuple[list[str], int]:
    """Delete one contact in the caller's transaction (see the module docstring); returns the
    sequences it left and how many queued messages were canceled."""
    view = refresh_view(ctx, row.id)
    left: list[str] = []
    if view is not None:
        for enrollment in open_enrollments(ctx, row.id):
            enrollment.open_key = None
            enrollment.closed_at = ctx.now
            enrollment.due_at = None
            set_status(ctx, enrollment, view, "canceled", "contact_deleted")
            left.append(enrollment.sequence_id)
    canceled = cancel_queued(ctx.session.connection(), ctx.workspace_id, [row.id])
    AuditLog(ctx.session, ctx.workspace_id).record(
        actor,
        "contact.deleted",
        f"contact:{row.id}",
        {"email": row.email, "canceled_enrollments": left, "canceled_messages": canceled},
        ctx.now,
    )
    ctx.flush_journal()
    ctx.session.flush()  # the enrollments' closing is written before the cascade removes them
    remember(ctx.session, ctx.workspace_id, [row.id], ctx.now)  # a blacklisting outlives the row
    ContactRepo(ctx.session, ctx.workspace_id, clock=ctx.clock).delete(row)
    return left, canceled


@dataclass
class CleanupReport:
    """What a clean-up found (and, applied, did). Counts are of contacts."""

    applied: bool
    targets: Counter[str] = field(default_factory=Counter)
    """Contacts to delete (deleted, when applied) by why: ``blacklisted: REASON`` or ``inactive``."""
    kept: Counter[str] = field(default_factory=Counter)
    """Targets kept by L5, by what protects them: ``purchase`` or ``membership``."""
    suppressed: int = 0
    """Targets blacklisted or unsubscribed from everything: their addresses stay suppressed
    (:mod:`dripflow.store.suppressions`), so they come back as they were."""
    deleted: int = 0

    @property
    def to_delete(self) -> int:
        return sum(self.targets.values())


OnVerdict = Callable[[Candidate, Verdict], None]


def clean_up(
    engine: Engine,
    workspace_id: str,
    request: CleanupRequest,
    clock: Clock,
    *,
    apply: bool,
    actor: str = "cli:clean-up",
    on_verdict: OnVerdict | None = None,
    page_size: int = PAGE_SIZE,
) -> CleanupReport:
    """Judge every candidate contact (L5) and, with ``apply``, delete the targets; ``on_verdict``
    sees each judged contact, in id order (for a review file, a progress bar)."""
    report = CleanupReport(applied=apply)
    after = 0
    while True:
        with transaction(engine) as session:
            conn = session.connection()
            page = find_candidates(conn, workspace_id, request, after, page_size)
            if not page:
                return report
            after = page[-1].id
            doomed: list[tuple[Candidate, str]] = []
            for candidate in page:
                verdict = judge(candidate, request)
                if verdict is None:
                    continue
                if on_verdict is not None:
                    on_verdict(candidate, verdict)
                if verdict.kept_for is not None:
                    report.kept[verdict.kept_for] += 1
                    continue
                why = (
                    f"blacklisted: {candidate.reason or 'unknown'}"
                    if verdict.target == "blacklisted"
                    else "inactive"
                )
                report.targets[why] += 1
                report.suppressed += candidate.lead_status == "blacklisted" or candidate.unsubscribed
                doomed.append((candidate, why))
            if apply and doomed:
                report.deleted += _delete(session, workspace_id, clock, doomed, actor)


def _delete(
    session: Session, workspace_id: str, clock: Clock, doomed: list[tuple[Candidate, str]], actor: str
) -> int:
    conn = session.connection()
    now = clock.now()
    enrolled = with_open_enrollments(conn, workspace_id, [candidate.id for candidate, _ in doomed])
    bulk = [(c.id, c.email, why) for c, why in doomed if c.id not in enrolled]
    remember(session, workspace_id, [contact_id for contact_id, _, _ in bulk], now)
    deleted = delete_contacts(conn, workspace_id, bulk, actor, now)
    if enrolled:
        ctx = Ctx(session, workspace_id, load_rules(session, workspace_id), clock)
        for contact_id in sorted(enrolled):
            row = session.get(Contact, contact_id)
            if row is not None and row.workspace_id == workspace_id:
                delete_contact(ctx, row, actor)
                deleted += 1
    return deleted
