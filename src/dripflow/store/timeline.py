"""A contact's history in time order, from four tables, read a page at a time (issue 6).

* ``event``: the event log's rows for the contact (events that came with an ``id``, and the
  API's own list, tag and contact changes), except those that also left a fact (the fact says it);
* ``fact``: what the contact did (opens, clicks, purchases, bounces …, SPEC §1 fact);
* ``journal``: what the engine decided and why (the records ``explain`` tells, X3/X5);
* ``message``: every email or SMS built for the contact, at the time it was built.

Records are ordered by time, then by source in that order (the cause before what it set off), then
by id. Pages use a keyset cursor ``(at, source rank, id)``: each table is read from just after it,
at most one page per table, and the four are merged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from dripflow.store.tables import Event, Fact, JournalEntry, Message

__all__ = ["SOURCES", "TimelineCursor", "TimelineRecord", "contact_timeline"]

SOURCES = ("event", "fact", "journal", "message")


@dataclass(frozen=True)
class TimelineCursor:
    """Where a page ended: the last record's time, source rank and id."""

    at: datetime
    rank: int
    id: int


@dataclass(frozen=True)
class TimelineRecord:
    at: datetime
    source: str
    kind: str
    data: dict[str, Any]
    id: int

    @property
    def cursor(self) -> TimelineCursor:
        return TimelineCursor(self.at, SOURCES.index(self.source), self.id)


def _after(
    at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[int],
    rank: int,
    cursor: TimelineCursor | None,
) -> ColumnElement[bool] | None:
    """Rows of the table of ``rank`` that sort after the cursor."""
    if cursor is None:
        return None
    if rank > cursor.rank:
        return at >= cursor.at
    if rank < cursor.rank:
        return at > cursor.at
    return (at > cursor.at) | ((at == cursor.at) & (id_ > cursor.id))


def contact_timeline(
    session: Session, workspace_id: str, contact_id: int, after: TimelineCursor | None, limit: int
) -> list[TimelineRecord]:
    """At most ``limit`` records of the contact's history after ``after``, in order."""
    found: list[TimelineRecord] = []

    def where(at: Any, id_: Any, rank: int) -> list[ColumnElement[bool]]:
        condition = _after(at, id_, rank, after)
        return [] if condition is None else [condition]

    fact_says_it = exists(
        select(Fact.id).where(
            Fact.workspace_id == Event.workspace_id,
            Fact.contact_id == Event.contact_id,
            Fact.kind == Event.type,
            Fact.at == Event.occurred_at,
        )
    )
    events = session.execute(
        select(Event.id, Event.occurred_at, Event.type, Event.payload)
        .where(
            Event.workspace_id == workspace_id,
            Event.contact_id == contact_id,
            ~fact_says_it,
            *where(Event.occurred_at, Event.id, 0),
        )
        .order_by(Event.occurred_at, Event.id)
        .limit(limit)
    )
    found.extend(
        TimelineRecord(at, "event", kind, dict(payload or {}), id_) for id_, at, kind, payload in events
    )
    facts = session.execute(
        select(Fact.id, Fact.at, Fact.kind, Fact.key, Fact.detail)
        .where(Fact.workspace_id == workspace_id, Fact.contact_id == contact_id, *where(Fact.at, Fact.id, 1))
        .order_by(Fact.at, Fact.id)
        .limit(limit)
    )
    for id_, at, kind, key, detail in facts:
        data = {"key": key} if key is not None else {}
        found.append(TimelineRecord(at, "fact", kind, {**data, **(detail or {})}, id_))
    journal = session.execute(
        select(JournalEntry.id, JournalEntry.at, JournalEntry.kind, JournalEntry.data)
        .where(
            JournalEntry.workspace_id == workspace_id,
            JournalEntry.contact_id == contact_id,
            *where(JournalEntry.at, JournalEntry.id, 2),
        )
        .order_by(JournalEntry.at, JournalEntry.id)
        .limit(limit)
    )
    for id_, at, kind, record in journal:
        data = {name: value for name, value in (record or {}).items() if name != "kind"}
        found.append(TimelineRecord(at, "journal", kind, data, id_))
    messages = session.scalars(
        select(Message)
        .where(
            Message.workspace_id == workspace_id,
            Message.contact_id == contact_id,
            *where(Message.created_at, Message.id, 3),
        )
        .order_by(Message.created_at, Message.id)
        .limit(limit)
    )
    for row in messages:
        found.append(TimelineRecord(row.created_at, "message", "message", _message(row), row.id))
    found.sort(key=lambda record: (record.at, SOURCES.index(record.source), record.id))
    return found[:limit]


def _message(row: Message) -> dict[str, Any]:
    data = {
        "outbox_id": row.id,
        "message": row.message_id,
        "status": row.status,
        "channel": row.channel,
        "to": row.recipient,
        "subject": row.subject,
        "sequence": row.sequence_id,
        "step": row.step_id,
        "broadcast": row.broadcast_id,
        "template": row.template,
        "variant": row.variant,
    }
    return {name: value for name, value in data.items() if value is not None}
