"""Loading :class:`~dripflow.core.contact_view.ContactView` snapshots in bulk.

One query per table for a whole batch of contacts, never one per contact: the scheduler builds
views for every enrollment it claims.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import BindParameter, Row, bindparam, select
from sqlalchemy.orm import Session

from dripflow.core.contact_view import ContactView, EnrollmentView, FactView
from dripflow.store.tables import Contact, ContactList, ContactTag, Enrollment, Fact, StepRun

__all__ = ["load_views", "new_contact_view"]

_CHUNK = 500


def load_views(session: Session, workspace_id: str, contact_ids: Iterable[int]) -> dict[int, ContactView]:
    """Views of the given contacts of one workspace; ids not in it are left out."""
    ids = sorted(set(contact_ids))
    views: dict[int, ContactView] = {}
    for start in range(0, len(ids), _CHUNK):
        views.update(_load_chunk(session, workspace_id, ids[start : start + _CHUNK]))
    return views


# The hot path's statements, built once: composing a SELECT costs more than running it on SQLite.
_W: BindParameter[str] = bindparam("workspace_id")
_IDS: BindParameter[list[int]] = bindparam("ids", expanding=True)
_CONTACTS = select(*Contact.__table__.c).where(Contact.workspace_id == _W, Contact.id.in_(_IDS))
_LISTS = select(ContactList.contact_id, ContactList.list).where(
    ContactList.workspace_id == _W, ContactList.contact_id.in_(_IDS), ContactList.unsubscribed_at.is_(None)
)
_TAGS = select(ContactTag.contact_id, ContactTag.tag).where(
    ContactTag.workspace_id == _W, ContactTag.contact_id.in_(_IDS)
)
_FACTS = (
    select(Fact.contact_id, Fact.kind, Fact.key, Fact.at, Fact.detail)
    .where(Fact.workspace_id == _W, Fact.contact_id.in_(_IDS))
    .order_by(Fact.at, Fact.id)
)
_REACHED = select(StepRun.contact_id, StepRun.sequence_id, StepRun.step_id).where(
    StepRun.workspace_id == _W, StepRun.contact_id.in_(_IDS)
)
_ENROLLMENTS = (
    select(Enrollment.contact_id, Enrollment.sequence_id, Enrollment.status, Enrollment.finished_at)
    .where(Enrollment.workspace_id == _W, Enrollment.contact_id.in_(_IDS))
    .order_by(Enrollment.id)
)


def _load_chunk(session: Session, workspace_id: str, ids: list[int]) -> dict[int, ContactView]:
    # Plain column rows on the session's connection, not ORM objects: a view is a snapshot, and
    # this is the engine's hot path (a Core SELECT costs a fraction of an ORM one). Pending ORM
    # changes are written first, as the session's autoflush would.
    session.flush()
    connection = session.connection()
    params = {"workspace_id": workspace_id, "ids": ids}
    contacts = connection.execute(_CONTACTS, params).all()
    lists: dict[int, set[str]] = defaultdict(set)
    for contact_id, name in connection.execute(_LISTS, params):
        lists[contact_id].add(name)
    tags: dict[int, set[str]] = defaultdict(set)
    for contact_id, tag in connection.execute(_TAGS, params):
        tags[contact_id].add(tag)
    facts: dict[int, list[FactView]] = defaultdict(list)
    for contact_id, kind, key, at, detail in connection.execute(_FACTS, params):
        facts[contact_id].append(FactView(kind, key, at, detail))
    reached: dict[tuple[int, str], set[str]] = defaultdict(set)
    for contact_id, sequence_id, step_id in connection.execute(_REACHED, params):
        reached[(contact_id, sequence_id)].add(step_id)
    latest: dict[tuple[int, str], str] = {}
    finished: set[tuple[int, str]] = set()
    for contact_id, sequence_id, status, finished_at in connection.execute(_ENROLLMENTS, params):
        key = (contact_id, sequence_id)
        latest[key] = status
        if finished_at is not None:
            finished.add(key)
    enrollments: dict[int, list[EnrollmentView]] = defaultdict(list)
    for (contact_id, sequence_id), status in sorted(latest.items()):
        enrollments[contact_id].append(
            EnrollmentView(
                sequence_id,
                status,
                frozenset(reached[(contact_id, sequence_id)]),
                (contact_id, sequence_id) in finished,
            )
        )
    return {
        contact.id: _view(
            contact,
            lists=frozenset(lists[contact.id]),
            tags=frozenset(tags[contact.id]),
            facts=tuple(facts[contact.id]),
            enrollments=tuple(enrollments[contact.id]),
        )
        for contact in contacts
    }


def new_contact_view(contact: Contact) -> ContactView:
    """The view of a contact created in this transaction: nothing to load, it has no history yet."""
    return _view(contact, lists=frozenset(), tags=frozenset(), facts=(), enrollments=())


def _view(
    contact: Contact | Row[Any],
    *,
    lists: frozenset[str],
    tags: frozenset[str],
    facts: tuple[FactView, ...],
    enrollments: tuple[EnrollmentView, ...],
) -> ContactView:
    return ContactView(
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
        lists=lists,
        tags=tags,
        facts=facts,
        enrollments=enrollments,
    )
