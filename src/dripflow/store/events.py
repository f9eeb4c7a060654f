"""The event log and the audit log of one workspace: both append-only.

Events are the history everything else is explained from (SPEC §9), so they are only ever
appended: :class:`EventLog` has no update or delete, and the ORM refuses to flush a change to a
loaded :class:`~dripflow.store.tables.Event`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from dripflow.store.database import dialect_insert
from dripflow.store.tables import AuditEntry, Event

__all__ = ["AuditLog", "EventLog"]


class EventLog:
    """Append and read one workspace's events."""

    def __init__(self, session: Session, workspace_id: str) -> None:
        self._session = session
        self.workspace_id = workspace_id

    def append(
        self,
        type: str,
        payload: Mapping[str, Any],
        contact_id: int | None,
        occurred_at: datetime,
        recorded_at: datetime,
        idempotency_key: str | None = None,
    ) -> tuple[int, bool]:
        """Record an event; returns its id and whether it was inserted.

        SPEC D3: an event whose ``idempotency_key`` this workspace has already seen inserts
        nothing and returns the first event's id. The check is the database's unique constraint
        (``INSERT ... ON CONFLICT DO NOTHING``), not a prior SELECT, so two workers receiving the
        same event at the same moment still record it once. Keys are per workspace.
        """
        values = {
            "workspace_id": self.workspace_id,
            "idempotency_key": idempotency_key,
            "type": type,
            "contact_id": contact_id,
            "payload": dict(payload),
            "occurred_at": occurred_at,
            "recorded_at": recorded_at,
        }
        if idempotency_key is None:
            return self._session.execute(insert(Event).values(values).returning(Event.id)).scalar_one(), True

        new_id = self._session.execute(
            dialect_insert(self._session, Event)
            .values(values)
            .on_conflict_do_nothing(index_elements=[Event.workspace_id, Event.idempotency_key])
            .returning(Event.id)
        ).scalar_one_or_none()
        if new_id is not None:
            return new_id, True
        # The conflicting row is committed (or ours): PostgreSQL made this statement wait for the
        # other transaction, and the next statement sees its result.
        first_id = self._session.execute(
            select(Event.id).where(
                Event.workspace_id == self.workspace_id, Event.idempotency_key == idempotency_key
            )
        ).scalar_one()
        return first_id, False

    def get(self, event_id: int) -> Event | None:
        return self._session.scalars(
            select(Event).where(Event.workspace_id == self.workspace_id, Event.id == event_id)
        ).one_or_none()

    def by_key(self, idempotency_key: str) -> Event | None:
        return self._session.scalars(
            select(Event).where(
                Event.workspace_id == self.workspace_id, Event.idempotency_key == idempotency_key
            )
        ).one_or_none()

    def for_contact(self, contact_id: int) -> list[Event]:
        """A contact's events in the order they happened (ties: the order they were recorded)."""
        return list(
            self._session.scalars(
                select(Event)
                .where(Event.workspace_id == self.workspace_id, Event.contact_id == contact_id)
                .order_by(Event.occurred_at, Event.id)
            )
        )

    def after(self, event_id: int, limit: int = 1000) -> list[Event]:
        """Events recorded after ``event_id``, oldest first: a cursor for consumers of the log."""
        return list(
            self._session.scalars(
                select(Event)
                .where(Event.workspace_id == self.workspace_id, Event.id > event_id)
                .order_by(Event.id)
                .limit(limit)
            )
        )


class AuditLog:
    """Who changed what by hand, and why (e.g. lifting a blacklisting, SPEC L2). Append-only."""

    def __init__(self, session: Session, workspace_id: str) -> None:
        self._session = session
        self.workspace_id = workspace_id

    def record(
        self,
        actor: str,
        action: str,
        target: str,
        detail: Mapping[str, Any] | None,
        at: datetime,
    ) -> AuditEntry:
        """Append one audit row. ``target`` names the thing changed, e.g. ``contact:42``."""
        entry = AuditEntry(
            workspace_id=self.workspace_id,
            at=at,
            actor=actor,
            action=action,
            target=target,
            detail=dict(detail or {}),
        )
        self._session.add(entry)
        self._session.flush()
        return entry

    def entries(self, target: str | None = None, action: str | None = None) -> list[AuditEntry]:
        """Audit rows, oldest first, optionally only those about ``target`` and/or of ``action``."""
        stmt = select(AuditEntry).where(AuditEntry.workspace_id == self.workspace_id)
        if target is not None:
            stmt = stmt.where(AuditEntry.target == target)
        if action is not None:
            stmt = stmt.where(AuditEntry.action == action)
        return list(self._session.scalars(stmt.order_by(AuditEntry.at, AuditEntry.id)))
