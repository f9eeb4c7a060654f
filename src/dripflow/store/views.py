"""Loading :class:`~dripflow.core.contact_view.ContactView` snapshots in bulk.

One query per table for a whole batch of contacts, never one per contact: the scheduler builds
views for every enrollment it claims.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Integer,
    Row,
    String,
    bindparam,
    cast,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from dripflow.core.contact_view import ContactView, EnrollmentView, FactView
from dripflow.store.tables import (
    Contact,
    ContactList,
    ContactTag,
    Enrollment,
    Fact,
    PortableJSON,
    StepRun,
    UTCDateTime,
)

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
# Everything else a view holds, from five tables in one statement (one round trip, not five):
# (contact, part, a, b, at, detail, ord) rows, typed by the first SELECT (CASTs: PostgreSQL
# resolves the UNION's column types from them, SQLAlchemy its result processing).
_LIST, _TAG, _FACT, _REACHED, _ENROLLED = range(5)


def _part(number: int) -> ColumnElement[int]:
    return literal_column(str(number), Integer).label("part")


_REST = union_all(
    select(
        ContactList.contact_id,
        _part(_LIST),
        ContactList.list.label("a"),
        cast(null(), String).label("b"),
        cast(null(), UTCDateTime()).label("at"),
        cast(null(), PortableJSON).label("detail"),
        cast(null(), BigInteger).label("ord"),
    ).where(
        ContactList.workspace_id == _W,
        ContactList.contact_id.in_(_IDS),
        ContactList.unsubscribed_at.is_(None),
    ),
    select(ContactTag.contact_id, _part(_TAG), ContactTag.tag, null(), null(), null(), null()).where(
        ContactTag.workspace_id == _W, ContactTag.contact_id.in_(_IDS)
    ),
    select(Fact.contact_id, _part(_FACT), Fact.kind, Fact.key, Fact.at, Fact.detail, Fact.id).where(
        Fact.workspace_id == _W, Fact.contact_id.in_(_IDS)
    ),
    select(
        StepRun.contact_id, _part(_REACHED), StepRun.sequence_id, StepRun.step_id, null(), null(), null()
    ).where(StepRun.workspace_id == _W, StepRun.contact_id.in_(_IDS)),
    select(
        Enrollment.contact_id,
        _part(_ENROLLED),
        Enrollment.sequence_id,
        Enrollment.status,
        Enrollment.finished_at,
        null(),
        Enrollment.id,
    ).where(Enrollment.workspace_id == _W, Enrollment.contact_id.in_(_IDS)),
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
    tags: dict[int, set[str]] = defaultdict(set)
    facts: dict[int, list[tuple[Any, int, FactView]]] = defaultdict(list)
    reached: dict[tuple[int, str], set[str]] = defaultdict(set)
    enrolled: list[tuple[int, int, str, str, Any]] = []
    for contact_id, part, a, b, at, detail, order in connection.execute(_REST, params):
        if part == _LIST:
            lists[contact_id].add(a)
        elif part == _TAG:
            tags[contact_id].add(a)
        elif part == _FACT:
            facts[contact_id].append((at, order, FactView(a, b, at, detail)))
        elif part == _REACHED:
            reached[(contact_id, a)].add(b)
        else:
            enrolled.append((order, contact_id, a, b, at))
    # The latest enrollment in each sequence gives its status (in the order they were made).
    latest: dict[tuple[int, str], str] = {}
    finished: set[tuple[int, str]] = set()
    for _order, contact_id, sequence_id, status, finished_at in sorted(enrolled):
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
            facts=tuple(fact for _at, _order, fact in sorted(facts[contact.id], key=_fact_order)),
            enrollments=tuple(enrollments[contact.id]),
        )
        for contact in contacts
    }


def _fact_order(item: tuple[Any, int, FactView]) -> tuple[Any, int]:
    return item[0], item[1]


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
