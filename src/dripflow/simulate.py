"""``dripflow simulate`` (SPEC X1–X3): the real engine on a virtual clock, messages captured.

The workspace is applied to a temporary SQLite database and the events are fed through the same
ingestion, automation and scheduler code as production. The clock never ticks: it jumps to the
next moment something happens (the next input event or the earliest due enrollment), so a year
of virtual time costs what its steps cost, not what its minutes cost. The log is the engine's
journal, sorted by time and then by the order the engine wrote it (cause before effect); ids and
times come from the input only, so the same input gives the same bytes.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from dripflow.core.clock import VirtualClock
from dripflow.core.errors import UserError
from dripflow.core.model import Workspace as WorkspaceDef
from dripflow.engine.broadcasts import next_broadcast_due, send_due_broadcasts
from dripflow.engine.context import Ctx, Rules, load_rules
from dripflow.engine.eventfile import InputEvent, format_at, parse_at, read_events
from dripflow.engine.ingest import IngestError, ingest
from dripflow.engine.scheduler import due_in, run_due
from dripflow.store.database import make_engine, transaction
from dripflow.store.migrate import upgrade
from dripflow.store.tables import Contact, Enrollment, JournalEntry
from dripflow.store.workspaces import apply_workspace, rules_key

__all__ = [
    "InputEvent",
    "SimulationResult",
    "final_state",
    "format_at",
    "parse_at",
    "read_events",
    "simulate",
]

_MAX_PASSES_AT_ONE_MOMENT = 10_000


class _SimClock(VirtualClock):
    virtual = True


@dataclass
class SimulationResult:
    log: list[dict[str, Any]]
    engine: Engine
    workspace_id: str

    def lines(self) -> Iterator[str]:
        for record in self.log:
            yield json.dumps(record, ensure_ascii=False, separators=(", ", ": "))


def simulate(
    workspace: WorkspaceDef,
    events: list[InputEvent],
    until: datetime,
    start: datetime | None = None,
    events_path: Path | None = None,
    database_dir: Path | None = None,
    database_url: str | None = None,
) -> SimulationResult:
    """Run the engine from ``start`` (default: the first event, else ``until``) to ``until``.

    By default on a fresh SQLite file; ``database_url`` runs the same loop on any store (the
    tests use it to drive the scheduler on PostgreSQL).
    """
    start = start or (events[0].at if events else until)
    if until < start:
        raise UserError(f"--until {format_at(until)} is before the start {format_at(start)}")
    if database_url is None:
        directory = database_dir or Path(tempfile.mkdtemp(prefix="dripflow-sim-"))
        database_url = f"sqlite:///{directory / 'simulation.db'}"
    url = database_url
    upgrade(url)
    engine = make_engine(url)
    clock = _SimClock(start)
    with transaction(engine) as session:
        apply_workspace(session, workspace, now=start, actor="simulate")
    workspace_id = workspace.workspace.id
    index, passes, last_moment = 0, 0, start
    source = str(events_path) if events_path is not None else "events"
    with transaction(engine) as session:
        due = _next_moment(session, workspace_id)
    shared = _SharedTransactions(engine, _RulesCarry(workspace_id))
    try:
        while True:
            event_at = events[index].at if index < len(events) else None
            moments = [t for t in (event_at, due) if t is not None and t <= until]
            if not moments:
                break
            moment = max(min(moments), clock.now())
            passes = passes + 1 if moment == last_moment else 0
            if passes > _MAX_PASSES_AT_ONE_MOMENT:
                at = format_at(moment)
                raise UserError(f"the simulation makes no progress at {at}: a step loops forever")
            last_moment = moment
            clock.set(moment)
            session = shared.session()
            ctx: Ctx | None = None  # one context per moment: its caches stay valid within it
            if event_at is not None and event_at <= moment:
                item = events[index]
                index += 1
                ctx = Ctx(session, workspace_id, load_rules(session, workspace_id), clock)
                try:
                    ingest(ctx, item.data)
                except IngestError as exc:
                    raise UserError(f"{source}:{item.line}: {exc}") from None
                # Events of one moment all go in before its steps run; what the last one made due
                # runs right after it.
                if index < len(events) and events[index].at <= moment:
                    due = _next_moment(session, workspace_id)
                    shared.moment_done()
                    continue
            if ctx is None:
                ctx = Ctx(session, workspace_id, load_rules(session, workspace_id), clock)
            run_due(ctx)
            send_due_broadcasts(ctx)
            due = _next_moment(session, workspace_id)
            shared.moment_done()
    except BaseException as exc:
        shared.close(exc)
        raise
    shared.close(None)
    return SimulationResult(_journal(engine, workspace_id), engine, workspace_id)


# Moments committed together: a simulation's store has no other writer, so committing each moment
# on its own buys nothing but a commit's cost per moment (hot path: thousands of moments).
_MOMENTS_PER_TRANSACTION = 200


class _SharedTransactions:
    """Consecutive moments in one transaction, committed every :data:`_MOMENTS_PER_TRANSACTION`."""

    def __init__(self, engine: Engine, carry: _RulesCarry) -> None:
        self._engine = engine
        self._carry = carry
        self._open: ExitStack | None = None
        self._session: Session | None = None
        self._moments = 0

    def session(self) -> Session:
        if self._session is None:
            self._open = ExitStack()
            self._session = self._open.enter_context(transaction(self._engine))
            self._carry.enter(self._session)
        return self._session

    def moment_done(self) -> None:
        self._moments += 1
        if self._moments >= _MOMENTS_PER_TRANSACTION:
            self.close(None)

    def close(self, error: BaseException | None) -> None:
        """Commit the moments so far, or roll them back when the simulation failed."""
        held, self._open, session, self._session, self._moments = self._open, None, self._session, None, 0
        if held is None or session is None:
            return
        if error is None:
            self._carry.leave(session)
            held.close()
        else:
            held.__exit__(type(error), error, error.__traceback__)


class _RulesCarry:
    """The workspace's rules, carried from one moment's transaction to the next.

    Nothing but this loop writes to the simulation's store, and whatever changes the rules (an
    operator command) drops them from the session; so rules still held at the end of a moment are
    current, and the next moment need not look them up again (one query a moment: hot path).
    """

    def __init__(self, workspace_id: str) -> None:
        self._key = rules_key(workspace_id)
        self._rules: Rules | None = None

    def enter(self, session: Session) -> None:
        if self._rules is not None:
            session.info[self._key] = self._rules

    def leave(self, session: Session) -> None:
        held = session.info.get(self._key)
        self._rules = held if isinstance(held, Rules) else None


def _next_moment(session: Session, workspace_id: str) -> datetime | None:
    """Where the virtual clock jumps next: a due step or a broadcast wave (webhooks are captured)."""
    moments = [t for t in (due_in(session, workspace_id), next_broadcast_due(session, workspace_id)) if t]
    return min(moments, default=None)


def _journal(engine: Engine, workspace_id: str) -> list[dict[str, Any]]:
    with transaction(engine) as session:  # plain rows on the connection: the whole log, read once
        rows = session.connection().execute(
            select(JournalEntry.at, JournalEntry.data)
            .where(JournalEntry.workspace_id == workspace_id)
            .order_by(JournalEntry.at, JournalEntry.id)
        )
        return [{"at": format_at(at), **data} for at, data in rows]


def final_state(result: SimulationResult) -> dict[str, Any]:
    """``--state``: every contact with its enrollments at the end of the simulation."""
    with transaction(result.engine) as session:
        contacts = session.scalars(
            select(Contact).where(Contact.workspace_id == result.workspace_id).order_by(Contact.id)
        ).all()
        enrollments = session.scalars(
            select(Enrollment).where(Enrollment.workspace_id == result.workspace_id).order_by(Enrollment.id)
        ).all()
        by_contact: dict[int, list[dict[str, Any]]] = {}
        for row in enrollments:
            by_contact.setdefault(row.contact_id, []).append(
                {
                    "sequence": row.sequence_id,
                    "status": row.status,
                    "reason": row.reason,
                    "next_step": row.next_step,
                    "due_at": format_at(row.due_at) if row.due_at else None,
                }
            )
        return {
            "contacts": [
                {
                    "contact": contact.email or str(contact.id),
                    "lead_status": contact.lead_status,
                    "score": contact.score,
                    "enrollments": by_contact.get(contact.id, []),
                }
                for contact in contacts
            ]
        }
