"""Reports: ``GET /v1/reports/sequences/{id}`` (per step and split-test variant, S9) and
``GET /v1/reports/broadcasts/{id}``; what each metric counts is in :mod:`dripflow.reports`."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from dripflow.api.deps import EngineDep, reader, refuse_nul
from dripflow.api.errors import ApiError, error_responses
from dripflow.api.routes.broadcasts import broadcast_out, find_broadcast
from dripflow.api.schemas import (
    BroadcastReportOut,
    CountsOut,
    SequenceReportOut,
    StepReportOut,
    VariantReportOut,
)
from dripflow.engine.context import load_rules
from dripflow.reports import Counts, broadcast_counts, sequence_report
from dripflow.store.database import transaction
from dripflow.store.tables import Sequence

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/reports",
    tags=["reports"],
    responses=error_responses(401, 403, 404, 422),
    dependencies=[Depends(refuse_nul)],
)


def _counts(counts: Counts) -> dict[str, int]:
    return CountsOut.model_validate(counts, from_attributes=True).model_dump()


@router.get("/sequences/{sequence_id}", response_model=SequenceReportOut)
def sequence(sequence_id: str, credential: reader, engine: EngineDep) -> SequenceReportOut:
    """Per email and SMS step, in the sequence's current order (then steps removed since, marked
    `removed`), and per variant of a split test: sent, delivered, opened, clicked, replied,
    bounced, unsubscribed, complained, each a number of messages (unique opens and clicks)."""
    workspace_id = credential.workspace_id
    with transaction(engine) as session:
        head = session.get(Sequence, (workspace_id, sequence_id))
        if head is None:
            raise ApiError(404, "not_found", f"no sequence {sequence_id!r} in this workspace")
        definition = load_rules(session, workspace_id).sequence(sequence_id)
        totals, steps = sequence_report(session, workspace_id, sequence_id, definition)
    return SequenceReportOut(
        sequence=sequence_id,
        version=head.current_version,
        totals=CountsOut(**_counts(totals)),
        steps=[
            StepReportOut(
                step=step.step,
                type=step.type,
                removed=step.removed,
                variants=[
                    VariantReportOut(variant=item.variant, **_counts(item.counts)) for item in step.variants
                ],
                **_counts(step.counts),
            )
            for step in steps
        ],
    )


@router.get("/broadcasts/{broadcast_id}", response_model=BroadcastReportOut)
def broadcast(broadcast_id: str, credential: reader, engine: EngineDep) -> BroadcastReportOut:
    """The broadcast (its definition and status, with how many were queued and left out) and its
    messages' sent, delivered, opened, clicked, replied, bounced, unsubscribed, complained."""
    with transaction(engine) as session:
        state = find_broadcast(session, credential.workspace_id, broadcast_id)
        totals = broadcast_counts(session, credential.workspace_id, broadcast_id)
    return BroadcastReportOut(broadcast=broadcast_out(state), totals=CountsOut(**_counts(totals)))
