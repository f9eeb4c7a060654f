"""``GET /v1/contacts/{contact}`` and its ``/explain`` (SPEC X5); ``contact`` is an email or an id."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select

from dripflow.api.deps import EngineDep, reader, refuse_nul
from dripflow.api.errors import ApiError, error_responses
from dripflow.api.schemas import EnrollmentOut, enrollment_out
from dripflow.explain import explain_contact
from dripflow.store.contacts import ContactRepo
from dripflow.store.database import transaction
from dripflow.store.tables import Enrollment
from dripflow.store.views import load_views

router = APIRouter(
    prefix="/v1/contacts",
    tags=["contacts"],
    responses=error_responses(401, 403, 422),
    dependencies=[Depends(refuse_nul)],
)


class ContactOut(BaseModel):
    id: int
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    timezone: str | None
    owner: str | None
    lead_status: str
    score: int
    lists: list[str]
    tags: list[str]
    fields: dict[str, Any]
    enrollments: list[EnrollmentOut]


class Explanation(BaseModel):
    contact: str
    lines: list[str]


@router.get("/{contact}", response_model=ContactOut, responses=error_responses(404))
def get_contact(contact: str, credential: reader, engine: EngineDep) -> ContactOut:
    with transaction(engine) as session:
        row = ContactRepo(session, credential.workspace_id).get(contact)
        if row is None:
            raise _no_contact(contact)
        view = load_views(session, credential.workspace_id, [row.id])[row.id]
        enrollments = session.scalars(
            select(Enrollment)
            .where(Enrollment.workspace_id == credential.workspace_id, Enrollment.contact_id == row.id)
            .order_by(Enrollment.id)
        )
        return ContactOut(
            id=view.id,
            email=view.email,
            phone=view.phone,
            first_name=view.first_name,
            last_name=view.last_name,
            timezone=view.timezone,
            owner=view.owner,
            lead_status=view.lead_status,
            score=view.score,
            lists=sorted(view.lists),
            tags=sorted(view.tags),
            fields=dict(view.fields),
            enrollments=[enrollment_out(item) for item in enrollments],
        )


@router.get("/{contact}/explain", response_model=Explanation, responses=error_responses(404))
def explain(contact: str, credential: reader, engine: EngineDep, sequence: str | None = None) -> Explanation:
    """Why the contact did or did not get each step, and what happens next (X5)."""
    with transaction(engine) as session:
        try:
            lines = explain_contact(session, credential.workspace_id, contact, sequence)
        except LookupError:
            raise _no_contact(contact) from None
    return Explanation(contact=contact, lines=lines)


def _no_contact(contact: str) -> ApiError:
    return ApiError(404, "not_found", f"no contact {contact!r} in this workspace (give an email or an id)")
