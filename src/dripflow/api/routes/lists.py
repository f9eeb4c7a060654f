"""A contact's lists and tags: subscribe, unsubscribe, tag, untag (issue 6).

Each is the engine event of that type (``list.subscribed``, ``list.unsubscribed``,
``tag.assigned``, ``tag.removed``), so starting rules and automations fire exactly as for
``POST /v1/events``; one that changes nothing emits nothing (SPEC A1) and answers
``changed: false``. A list or tag the workspace file does not declare is refused with a
did-you-mean, as in the events route.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import Engine

from dripflow.api.contact_writes import MembershipEvent, Undeclared, change_membership
from dripflow.api.deps import ClockDep, EngineDep, refuse_nul, writer
from dripflow.api.errors import ApiError, error_responses
from dripflow.api.schemas import MembershipChange
from dripflow.core.clock import Clock
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.ingest import IngestError
from dripflow.store.contacts import ContactRepo
from dripflow.store.database import transaction
from dripflow.store.views import load_views

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/contacts/{contact}",
    tags=["lists and tags"],
    responses=error_responses(401, 403, 404, 422),
    dependencies=[Depends(refuse_nul)],
)


# `list` names the path parameter as users see it; these handlers never need the builtin.
@router.post("/lists/{list}", response_model=MembershipChange)
def subscribe(
    contact: str, list: str, credential: writer, engine: EngineDep, clock: ClockDep
) -> MembershipChange:
    """Subscribe the contact to a list (`list.subscribed`)."""
    return _change(engine, clock, credential.workspace_id, contact, "list.subscribed", list)


@router.delete("/lists/{list}", response_model=MembershipChange)
def unsubscribe(
    contact: str, list: str, credential: writer, engine: EngineDep, clock: ClockDep
) -> MembershipChange:
    """Take the contact off a list (`list.unsubscribed`; L3: broadcasts to it stop)."""
    return _change(engine, clock, credential.workspace_id, contact, "list.unsubscribed", list)


@router.post("/tags/{tag}", response_model=MembershipChange)
def add_tag(
    contact: str, tag: str, credential: writer, engine: EngineDep, clock: ClockDep
) -> MembershipChange:
    """Tag the contact (`tag.assigned`)."""
    return _change(engine, clock, credential.workspace_id, contact, "tag.assigned", tag)


@router.delete("/tags/{tag}", response_model=MembershipChange)
def remove_tag(
    contact: str, tag: str, credential: writer, engine: EngineDep, clock: ClockDep
) -> MembershipChange:
    """Untag the contact (`tag.removed`)."""
    return _change(engine, clock, credential.workspace_id, contact, "tag.removed", tag)


def _change(
    engine: Engine, clock: Clock, workspace_id: str, contact: str, kind: MembershipEvent, name: str
) -> MembershipChange:
    with transaction(engine) as session:
        row = ContactRepo(session, workspace_id).get(contact)
        if row is None:
            raise ApiError(
                404, "not_found", f"no contact {contact!r} in this workspace (give an email or an id)"
            )
        ctx = Ctx(session, workspace_id, load_rules(session, workspace_id), clock)
        try:
            changed = change_membership(ctx, row, kind, name)
        except Undeclared as exc:
            raise ApiError(422, "undeclared", str(exc)) from None
        except IngestError as exc:  # raising rolls the whole request back
            raise ApiError(422, "invalid_request", str(exc)) from None
        view = load_views(session, workspace_id, [row.id])[row.id]
        return MembershipChange(changed=changed, lists=sorted(view.lists), tags=sorted(view.tags))
