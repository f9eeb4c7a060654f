"""Finding clean-up candidates and deleting contacts in bulk (SPEC L5; the rules: core.cleanup).

One query per page of contacts, in id order (keyset pagination, so deleting a page does not move
the next one): the contact with its latest fact and event and whether it ever bought or was given
a membership, each a correlated subquery on the ``(workspace_id, contact_id, …)`` indexes of
``facts`` and ``events``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, insert, or_, select, update

from dripflow.core.cleanup import Candidate, CleanupRequest
from dripflow.core.contact_view import OPEN_STATUSES
from dripflow.store.tables import AuditEntry, Contact, Enrollment, Event, Fact, Message

__all__ = ["cancel_queued", "delete_contacts", "find_candidates", "with_open_enrollments"]

_C = Contact.__table__.c
_F = Fact.__table__.c
_E = Event.__table__.c


def find_candidates(
    conn: Connection, workspace_id: str, request: CleanupRequest, after_id: int, limit: int
) -> list[Candidate]:
    """Up to ``limit`` contacts after ``after_id`` that may be targets: blacklisted ones, and
    inactive ones created before the cut-off (the rest of the judgement is :func:`judge`'s)."""
    wanted: list[Any] = []
    if request.blacklisted:
        wanted.append(_C.lead_status == "blacklisted")
    if request.inactive_since is not None:
        wanted.append(and_(_C.lead_status == "inactive", _C.created_at < request.inactive_since))
    if not wanted:
        return []
    facts = and_(_F.workspace_id == workspace_id, _F.contact_id == _C.id)
    last_fact = select(func.max(_F.at)).where(facts).scalar_subquery()
    last_event = (
        select(func.max(_E.occurred_at))
        .where(_E.workspace_id == workspace_id, _E.contact_id == _C.id)
        .scalar_subquery()
    )
    bought = exists().where(facts, _F.kind == "product.purchased")
    member = exists().where(facts, _F.kind == "membership.granted")
    stmt = (
        select(
            _C.id,
            _C.email,
            _C.lead_status,
            _C.lead_status_reason,
            _C.unsubscribed_at,
            _C.created_at,
            last_fact.label("last_fact"),
            last_event.label("last_event"),
            bought.label("bought"),
            member.label("member"),
        )
        .where(_C.workspace_id == workspace_id, _C.id > after_id, or_(*wanted))
        .order_by(_C.id)
        .limit(limit)
    )
    found = []
    for row in conn.execute(stmt):
        moments = [moment for moment in (row.created_at, row.last_fact, row.last_event) if moment]
        found.append(
            Candidate(
                id=row.id,
                email=row.email,
                lead_status=row.lead_status,
                reason=row.lead_status_reason,
                unsubscribed=row.unsubscribed_at is not None,
                last_activity=max(moments),
                bought=bool(row.bought),
                member=bool(row.member),
            )
        )
    return found


def with_open_enrollments(conn: Connection, workspace_id: str, contact_ids: Sequence[int]) -> set[int]:
    """Those of ``contact_ids`` still in a sequence (deleted one by one, closing their enrollments)."""
    if not contact_ids:
        return set()
    return set(
        conn.scalars(
            select(Enrollment.contact_id)
            .where(
                Enrollment.workspace_id == workspace_id,
                Enrollment.contact_id.in_(contact_ids),
                Enrollment.status.in_(OPEN_STATUSES),
            )
            .distinct()
        )
    )


def cancel_queued(conn: Connection, workspace_id: str, contact_ids: Sequence[int]) -> int:
    """Cancel the queued messages of contacts about to be deleted; returns how many."""
    result = conn.execute(
        update(Message)
        .where(
            Message.workspace_id == workspace_id,
            Message.contact_id.in_(contact_ids),
            Message.status == "queued",
        )
        .values(status="canceled", last_error="the contact was deleted")
    )
    return int(result.rowcount or 0)


def delete_contacts(
    conn: Connection,
    workspace_id: str,
    doomed: Sequence[tuple[int, str | None, str]],
    actor: str,
    now: datetime,
) -> int:
    """Delete contacts that are in no open enrollment, three statements for the lot: their queued
    messages canceled, one audit row each (``contact.deleted``, with the email and why), the rows
    deleted (lists, tags, facts and closed enrollments go by the database's cascade; the event log
    and the outbox keep their history). ``doomed``: (id, email, why). Returns how many went."""
    if not doomed:
        return 0
    ids = [contact_id for contact_id, _email, _why in doomed]
    cancel_queued(conn, workspace_id, ids)
    conn.execute(
        insert(AuditEntry),
        [
            {
                "workspace_id": workspace_id,
                "at": now,
                "actor": actor,
                "action": "contact.deleted",
                "target": f"contact:{contact_id}",
                "detail": {"email": email, "clean_up": why},
            }
            for contact_id, email, why in doomed
        ],
    )
    result = conn.execute(delete(Contact).where(Contact.workspace_id == workspace_id, Contact.id.in_(ids)))
    return int(result.rowcount or 0)
