"""Loading :class:`~dripflow.core.contact_view.ContactView` snapshots in bulk.

One query per table for a whole batch of contacts, never one per contact: the scheduler builds
views for every enrollment it claims.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from dripflow.core.contact_view import ContactView, EnrollmentView, FactView
from dripflow.store.tables import Contact, ContactList, ContactTag, Enrollment, Fact, StepRun

__all__ = ["load_views"]

_CHUNK = 500


def load_views(session: Session, workspace_id: str, contact_ids: Iterable[int]) -> dict[int, ContactView]:
    """Views of the given contacts of one workspace; ids not in it are left out."""
    ids = sorted(set(contact_ids))
    views: dict[int, ContactView] = {}
    for start in range(0, len(ids), _CHUNK):
        views.update(_load_chunk(session, workspace_id, ids[start : start + _CHUNK]))
    return views


def _load_chunk(session: Session, workspace_id: str, ids: list[int]) -> dict[int, ContactView]:
    contacts = session.scalars(
        select(Contact).where(Contact.workspace_id == workspace_id, Contact.id.in_(ids))
    ).all()
    lists: dict[int, set[str]] = defaultdict(set)
    for contact_id, name in session.execute(
        select(ContactList.contact_id, ContactList.list).where(
            ContactList.workspace_id == workspace_id,
            ContactList.contact_id.in_(ids),
            ContactList.unsubscribed_at.is_(None),
        )
    ):
        lists[contact_id].add(name)
    tags: dict[int, set[str]] = defaultdict(set)
    for contact_id, tag in session.execute(
        select(ContactTag.contact_id, ContactTag.tag).where(
            ContactTag.workspace_id == workspace_id, ContactTag.contact_id.in_(ids)
        )
    ):
        tags[contact_id].add(tag)
    facts: dict[int, list[FactView]] = defaultdict(list)
    for fact in session.scalars(
        select(Fact)
        .where(Fact.workspace_id == workspace_id, Fact.contact_id.in_(ids))
        .order_by(Fact.at, Fact.id)
    ):
        facts[fact.contact_id].append(FactView(fact.kind, fact.key, fact.at, fact.detail))
    reached: dict[tuple[int, str], set[str]] = defaultdict(set)
    for contact_id, sequence_id, step_id in session.execute(
        select(StepRun.contact_id, StepRun.sequence_id, StepRun.step_id).where(
            StepRun.workspace_id == workspace_id, StepRun.contact_id.in_(ids)
        )
    ):
        reached[(contact_id, sequence_id)].add(step_id)
    latest: dict[tuple[int, str], Enrollment] = {}
    finished: set[tuple[int, str]] = set()
    for enrollment in session.scalars(
        select(Enrollment)
        .where(Enrollment.workspace_id == workspace_id, Enrollment.contact_id.in_(ids))
        .order_by(Enrollment.id)
    ):
        key = (enrollment.contact_id, enrollment.sequence_id)
        latest[key] = enrollment
        if enrollment.finished_at is not None:
            finished.add(key)
    enrollments: dict[int, list[EnrollmentView]] = defaultdict(list)
    for (contact_id, sequence_id), enrollment in sorted(latest.items()):
        enrollments[contact_id].append(
            EnrollmentView(
                sequence_id,
                enrollment.status,
                frozenset(reached[(contact_id, sequence_id)]),
                (contact_id, sequence_id) in finished,
            )
        )
    return {
        contact.id: ContactView(
            id=contact.id,
            email=contact.email,
            phone=contact.phone,
            first_name=contact.first_name,
            last_name=contact.last_name,
            timezone=contact.timezone,
            source=contact.source,
            owner=contact.owner,
            address=contact.address,
            fields=dict(contact.fields or {}),
            score=contact.score,
            lead_status=contact.lead_status,
            unsubscribed=contact.unsubscribed_at is not None,
            lists=frozenset(lists[contact.id]),
            tags=frozenset(tags[contact.id]),
            facts=tuple(facts[contact.id]),
            enrollments=tuple(enrollments[contact.id]),
        )
        for contact in contacts
    }
