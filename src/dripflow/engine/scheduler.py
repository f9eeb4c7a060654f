"""Finding due enrollments and running them, in batches (issue: the scheduler; SPEC D3).

Due enrollments are claimed by the indexed ``(status, due_at)``; on PostgreSQL with
``FOR UPDATE SKIP LOCKED`` so that several workers never take the same one. Each batch is one
transaction: its steps, messages, journal records and the enrollments' new due times commit
together or not at all, so a crash loses nothing and repeats nothing. The same code runs under
the wall clock (the worker) and a virtual one (simulate).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, bindparam, func, select, union_all
from sqlalchemy.orm import Session

from dripflow.core.clock import Clock
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.enrollments import flush_enrollments, preload_step_runs, write_claimed
from dripflow.engine.steps import Caps, run_enrollment
from dripflow.engine.triggers import drain
from dripflow.store.database import is_postgresql, transaction
from dripflow.store.tables import Enrollment
from dripflow.store.views import load_views

__all__ = ["DUE_STATUSES", "due_in", "run_due", "run_once"]

DUE_STATUSES = ("active", "queued", "blocked")
BATCH_SIZE = 500


def run_once(engine: Engine, workspace_id: str, clock: Clock, batch_size: int = BATCH_SIZE) -> int:
    """Claim and run one batch of due enrollments; returns how many were claimed."""
    with transaction(engine) as session:
        ctx = Ctx(session, workspace_id, load_rules(session, workspace_id), clock)
        return run_due(ctx, batch_size)


# The claim, built once (with and without SKIP LOCKED): it runs on every pass of every worker.
_CLAIM = (
    select(Enrollment)
    .where(
        Enrollment.workspace_id == bindparam("workspace_id"),
        Enrollment.status.in_(DUE_STATUSES),
        Enrollment.due_at <= bindparam("now"),
    )
    .order_by(Enrollment.due_at, Enrollment.id)
    .limit(bindparam("batch"))
)
_CLAIM_LOCKED = _CLAIM.with_for_update(skip_locked=True)
# The earliest due time, one index seek per status (a MIN over an IN list would scan them all).
_NEXT_DUE = select(
    func.min(
        union_all(
            *(
                select(func.min(Enrollment.due_at).label("due")).where(
                    Enrollment.workspace_id == bindparam("workspace_id"), Enrollment.status == status
                )
                for status in DUE_STATUSES
            )
        )
        .subquery()
        .c.due
    )
)


def run_due(ctx: Ctx, batch_size: int = BATCH_SIZE) -> int:
    stmt = _CLAIM_LOCKED if is_postgresql(ctx.session.get_bind().engine) else _CLAIM
    params = {"workspace_id": ctx.workspace_id, "now": ctx.now, "batch": batch_size}
    rows = list(ctx.session.scalars(stmt, params))
    if not rows:
        return 0
    views = load_views(ctx.session, ctx.workspace_id, {row.contact_id for row in rows})
    preload_step_runs(ctx, [row.id for row in rows])
    caps = Caps()
    for row in rows:
        contact = views.get(row.contact_id)
        if contact is None:
            continue
        run_enrollment(ctx, row, contact, caps)
        if ctx.pending:
            drain(ctx)
    write_claimed(ctx, rows)
    ctx.session.flush()
    ctx.flush_journal()
    return len(rows)


def due_in(session: Session, workspace_id: str) -> datetime | None:
    flush_enrollments(session)  # the due times as they stand, read as a plain row (every pass)
    due: datetime | None = session.connection().scalar(_NEXT_DUE, {"workspace_id": workspace_id})
    if due is not None and due.tzinfo is None:  # SQLite hands a bare MIN() back without our type
        due = due.replace(tzinfo=UTC)
    return due
