"""``GET /v1/automations``: the applied workspace's automations (SPEC §3) and how often each fired."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from dripflow.api.deps import EngineDep, reader, refuse_nul
from dripflow.api.errors import error_responses
from dripflow.api.schemas import AutomationOut
from dripflow.engine.context import load_rules
from dripflow.reports import AutomationCount, automation_counts
from dripflow.store.database import transaction

__all__ = ["router"]

router = APIRouter(
    prefix="/v1",
    tags=["automations"],
    responses=error_responses(401, 403, 422),
    dependencies=[Depends(refuse_nul)],
)


@router.get("/automations", response_model=list[AutomationOut])
def list_automations(credential: reader, engine: EngineDep) -> list[AutomationOut]:
    """In the file's order, each with its definition, how many times it fired (once per event
    and contact, A3) and was passed over (its `if` was false, or it had already run for that
    event), and when it last fired; counted from the journal, so what explain tells."""
    with transaction(engine) as session:
        workspace = load_rules(session, credential.workspace_id).workspace
        counts = automation_counts(session, credential.workspace_id)
    found = []
    for automation in workspace.automations:
        count = counts.get(automation.id, AutomationCount())
        found.append(
            AutomationOut(
                id=automation.id,
                definition=automation.model_dump(mode="json"),
                fired=count.fired,
                skipped=count.skipped,
                last_fired_at=count.last_fired_at,
            )
        )
    return found
