"""Contacts over the API (SPEC §10, issue 6); ``contact`` in a path is an email or an id.

* ``POST /v1/contacts``: create, or update the contact with that email (201 / 200);
* ``GET /v1/contacts``: search by ``email`` (part of the address), ``tag``, ``list`` and lead
  ``status``, a page at a time;
* ``GET``, ``PATCH``, ``DELETE /v1/contacts/{contact}``; ``/explain`` (X5); ``/timeline``.

Writes go through the engine (:mod:`dripflow.api.contact_writes`), so automations fire as they
do for ``POST /v1/events``. Another workspace's contact answers 404, exactly like a missing one.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from dripflow.api.bodies import unstorable
from dripflow.api.contact_writes import (
    Checked,
    InvalidContact,
    checked_create,
    checked_patch,
    save_contact,
)
from dripflow.api.deps import ClockDep, EngineDep, reader, refuse_nul, writer
from dripflow.api.errors import ApiError, ErrorBody, error_responses
from dripflow.api.schemas import (
    ContactIn,
    ContactPage,
    ContactPatch,
    ContactSummary,
    Deleted,
    EnrollmentOut,
    TimelineItem,
    TimelinePage,
    enrollment_out,
)
from dripflow.core.clock import Clock
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.removal import delete_contact
from dripflow.explain import explain_contact
from dripflow.store.contacts import ContactConflict, ContactRepo
from dripflow.store.database import transaction
from dripflow.store.tables import Contact, ContactList, ContactTag, Enrollment
from dripflow.store.timeline import TimelineCursor, contact_timeline
from dripflow.store.views import load_views

router = APIRouter(
    prefix="/v1/contacts",
    tags=["contacts"],
    responses=error_responses(401, 403, 422),
    dependencies=[Depends(refuse_nul)],
)

_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "Another contact of the workspace has that email address."}
}


class ContactOut(BaseModel):
    id: int
    email: str | None
    email_suggestion: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    timezone: str | None
    source: str | None
    owner: str | None
    address: dict[str, Any] | None
    lead_status: str
    score: int
    unsubscribed: bool
    lists: list[str]
    tags: list[str]
    fields: dict[str, Any]
    enrollments: list[EnrollmentOut]
    created_at: datetime
    updated_at: datetime


class Explanation(BaseModel):
    contact: str
    lines: list[str]


@router.post(
    "",
    response_model=ContactOut,
    status_code=201,
    responses={
        200: {"model": ContactOut, "description": "An existing contact, updated."},
        **error_responses(400),
        **_CONFLICT,
    },
)
def create_contact(
    body: ContactIn, response: Response, credential: writer, engine: EngineDep, clock: ClockDep
) -> ContactOut:
    """Create a contact, or update the one with this email (201 created, 200 updated).

    Checked like an import row: a likely domain typo is stored as `email_suggestion` (L4)."""
    _refuse_unstorable(body)
    with transaction(engine) as session:
        ctx = _ctx(session, credential.workspace_id, clock)
        checked = _checked(lambda: checked_create(body, ctx.workspace))
        try:
            row, created = save_contact(ctx, checked)
        except ContactConflict as exc:  # only a concurrent create of the same address
            raise ApiError(409, "conflict", str(exc)) from None
        response.status_code = 201 if created else 200
        return _contact_out(session, credential.workspace_id, row)


@router.get("", response_model=ContactPage)
def search_contacts(
    credential: reader,
    engine: EngineDep,
    email: str | None = Query(None, description="Part of the address, any case: `acme.test`."),
    tag: str | None = None,
    list_: str | None = Query(None, alias="list", description="Contacts subscribed to this list now."),
    status: Literal["active", "inactive", "blacklisted"] | None = Query(
        None, description="Lead status (L1)."
    ),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = None,
) -> ContactPage:
    """Contacts in id order matching every filter given; pass `next_cursor` back as `cursor`."""
    workspace_id = credential.workspace_id
    stmt = select(Contact).where(Contact.workspace_id == workspace_id, Contact.id > _id_cursor(cursor))
    if email is not None:
        stmt = stmt.where(Contact.email.contains(email.strip().lower(), autoescape=True))
    if tag is not None:
        stmt = stmt.where(
            exists().where(
                ContactTag.workspace_id == workspace_id,
                ContactTag.contact_id == Contact.id,
                ContactTag.tag == tag,
            )
        )
    if list_ is not None:
        stmt = stmt.where(
            exists().where(
                ContactList.workspace_id == workspace_id,
                ContactList.contact_id == Contact.id,
                ContactList.list == list_,
                ContactList.unsubscribed_at.is_(None),
            )
        )
    if status is not None:
        stmt = stmt.where(Contact.lead_status == status)
    with transaction(engine) as session:
        rows = session.scalars(stmt.order_by(Contact.id).limit(limit + 1)).all()
        page = rows[:limit]
        views = load_views(session, workspace_id, [row.id for row in page])
        items = [
            ContactSummary(
                id=row.id,
                email=row.email,
                phone=row.phone,
                first_name=row.first_name,
                last_name=row.last_name,
                lead_status=row.lead_status,
                score=row.score,
                lists=sorted(views[row.id].lists),
                tags=sorted(views[row.id].tags),
                created_at=row.created_at,
            )
            for row in page
        ]
    return ContactPage(items=items, next_cursor=str(page[-1].id) if len(rows) > limit else None)


@router.get("/{contact}", response_model=ContactOut, responses=error_responses(404))
def get_contact(contact: str, credential: reader, engine: EngineDep) -> ContactOut:
    with transaction(engine) as session:
        row = _find(session, credential.workspace_id, contact)
        return _contact_out(session, credential.workspace_id, row)


@router.patch("/{contact}", response_model=ContactOut, responses={**error_responses(400, 404), **_CONFLICT})
def update_contact(
    contact: str, body: ContactPatch, credential: writer, engine: EngineDep, clock: ClockDep
) -> ContactOut:
    """Change the attributes sent; null removes one. Each change fires `contact.updated`
    {changed: NAME} (a custom field by its key), as an action's change does."""
    _refuse_unstorable(body)
    with transaction(engine) as session:
        row = _find(session, credential.workspace_id, contact)
        ctx = _ctx(session, credential.workspace_id, clock)
        checked = _checked(lambda: checked_patch(body, ctx.workspace))
        try:
            row, _created = save_contact(ctx, checked, contact_id=row.id)
        except ContactConflict as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        return _contact_out(session, credential.workspace_id, row)


@router.delete("/{contact}", response_model=Deleted, responses=error_responses(404))
def remove_contact(contact: str, credential: writer, engine: EngineDep, clock: ClockDep) -> Deleted:
    """Delete the contact with its lists, tags and facts. Its open enrollments are first canceled
    (`contact_deleted`, SPEC §6) and its queued messages canceled; the journal, the event log and
    the messages already built keep the history; the deletion is audited."""
    with transaction(engine) as session:
        row = _find(session, credential.workspace_id, contact)
        ctx = _ctx(session, credential.workspace_id, clock)
        left, canceled = delete_contact(ctx, row, actor=f"api:{credential.prefix}")
    return Deleted(deleted=True, canceled_enrollments=left, canceled_messages=canceled)


@router.get("/{contact}/explain", response_model=Explanation, responses=error_responses(404))
def explain(contact: str, credential: reader, engine: EngineDep, sequence: str | None = None) -> Explanation:
    """Why the contact did or did not get each step, and what happens next (X5)."""
    with transaction(engine) as session:
        try:
            lines = explain_contact(session, credential.workspace_id, contact, sequence)
        except LookupError:
            raise _no_contact(contact) from None
    return Explanation(contact=contact, lines=lines)


@router.get("/{contact}/timeline", response_model=TimelinePage, responses=error_responses(404))
def timeline(
    contact: str,
    credential: reader,
    engine: EngineDep,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = None,
) -> TimelinePage:
    """The contact's events, facts, engine journal and messages, oldest first (at equal times the
    cause comes first). Pass `next_cursor` back as `cursor` for the next page."""
    after = _timeline_cursor(cursor)
    with transaction(engine) as session:
        row = _find(session, credential.workspace_id, contact)
        records = contact_timeline(session, credential.workspace_id, row.id, after, limit + 1)
    page = records[:limit]
    items = [TimelineItem(at=item.at, source=item.source, kind=item.kind, data=item.data) for item in page]
    next_cursor = _encode_cursor(page[-1].cursor) if len(records) > limit else None
    return TimelinePage(items=items, next_cursor=next_cursor)


# -- helpers -----------------------------------------------------------------------------------------


def _ctx(session: Session, workspace_id: str, clock: Clock) -> Ctx:
    return Ctx(session, workspace_id, load_rules(session, workspace_id), clock)


def _find(session: Session, workspace_id: str, contact: str) -> Contact:
    row = ContactRepo(session, workspace_id).get(contact)
    if row is None:
        raise _no_contact(contact)
    return row


def _checked(check: Callable[[], Checked]) -> Checked:
    try:
        return check()
    except InvalidContact as exc:
        raise ApiError(
            422, "invalid_contact", "the contact is not valid; see problems", exc.problems
        ) from None


def _refuse_unstorable(body: BaseModel) -> None:
    why = unstorable(body.model_dump())
    if why is not None:
        raise ApiError(422, "invalid_request", f"the body cannot be stored: {why}")


def _contact_out(session: Session, workspace_id: str, row: Contact) -> ContactOut:
    view = load_views(session, workspace_id, [row.id])[row.id]
    enrollments = session.scalars(
        select(Enrollment)
        .where(Enrollment.workspace_id == workspace_id, Enrollment.contact_id == row.id)
        .order_by(Enrollment.id)
    )
    return ContactOut(
        id=row.id,
        email=row.email,
        email_suggestion=row.email_suggestion,
        phone=row.phone,
        first_name=row.first_name,
        last_name=row.last_name,
        timezone=row.timezone,
        source=row.source,
        owner=row.owner,
        address=row.address,
        lead_status=row.lead_status,
        score=row.score,
        unsubscribed=row.unsubscribed_at is not None,
        lists=sorted(view.lists),
        tags=sorted(view.tags),
        fields=dict(row.fields or {}),
        enrollments=[enrollment_out(item) for item in enrollments],
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _id_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
        raise ApiError(422, "invalid_request", "`cursor` must be a `next_cursor` from an earlier page")
    return int(cursor)


def _encode_cursor(cursor: TimelineCursor) -> str:
    text = f"{cursor.at.isoformat()}|{cursor.rank}|{cursor.id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _timeline_cursor(cursor: str | None) -> TimelineCursor | None:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, rank, id_ = text.split("|")
        found = TimelineCursor(datetime.fromisoformat(at), int(rank), int(id_))
        if found.at.tzinfo is None or not 0 <= found.rank <= 3 or not 0 <= found.id < 2**63:
            raise ValueError(text)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ApiError(
            422, "invalid_request", "`cursor` must be a `next_cursor` from an earlier page"
        ) from None
    return found


def _no_contact(contact: str) -> ApiError:
    return ApiError(404, "not_found", f"no contact {contact!r} in this workspace (give an email or an id)")
