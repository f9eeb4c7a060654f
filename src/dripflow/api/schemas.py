"""Response shapes shared by several routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dripflow.store.tables import Enrollment

__all__ = [
    "AutomationOut",
    "BroadcastCanceled",
    "BroadcastOut",
    "BroadcastReportOut",
    "CountsOut",
    "EnrollRequest",
    "EnrollmentOut",
    "RefusalOut",
    "RefusalPage",
    "ScheduleRequest",
    "SequenceDetail",
    "SequenceReportOut",
    "SequenceVersionOut",
    "SequenceWritten",
    "StepReportOut",
    "TestSendOut",
    "TestSendRequest",
    "VariantReportOut",
    "WorkspaceChanges",
    "WorkspaceProblem",
    "WorkspaceValidation",
    "enrollment_out",
]


class EnrollmentOut(BaseModel):
    id: int
    contact_id: int
    sequence: str
    status: str
    reason: str | None
    next_step: str | None
    due_at: datetime | None


def enrollment_out(row: Enrollment) -> EnrollmentOut:
    return EnrollmentOut(
        id=row.id,
        contact_id=row.contact_id,
        sequence=row.sequence_id,
        status=row.status,
        reason=row.reason,
        next_step=row.next_step,
        due_at=row.due_at,
    )


# -- sequences, enrollments, automations, broadcasts, the workspace, reports (issue 6) ---------------


class SequenceDetail(BaseModel):
    """A sequence: its live definition (the workspace file's shape), status, version and how many
    enrollments it has in each status of SPEC §6."""

    id: str
    status: str
    version: int
    kind: str
    steps: list[str]
    definition: dict[str, Any]
    enrollments: dict[str, int]
    updated_at: datetime


class SequenceWritten(SequenceDetail):
    changed: bool = Field(description="False when the definition was the live one: nothing was written.")


class SequenceVersionOut(BaseModel):
    version: int
    current: bool
    created_at: datetime
    definition: dict[str, Any]


class RefusalOut(BaseModel):
    """A `not_enrolled` record (SPEC §6): who was not enrolled where, why, and the sentence explain says."""

    at: datetime
    contact_id: int | None
    contact: str | None
    sequence: str
    reason: str
    detail: str | None
    by: str | None
    message: str


class RefusalPage(BaseModel):
    items: list[RefusalOut]
    next_cursor: str | None


class EnrollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact: str = Field(description="The contact's email or id; it must exist.")
    sequence: str


class AutomationOut(BaseModel):
    id: str
    definition: dict[str, Any] = Field(description="As in the workspace file: `when`, `if`, `then`.")
    fired: int
    skipped: int = Field(
        description="Its trigger matched but `if` was false, or it had run for that event (A3)."
    )
    last_fired_at: datetime | None


class BroadcastOut(BaseModel):
    id: str
    source: str = Field(
        description="`workspace` (the workspace file) or `api` (made with POST /v1/broadcasts)."
    )
    status: str = Field(description="`draft`, `scheduled`, `sending`, `sent` or `canceled`.")
    definition: dict[str, Any]
    queued: int = Field(description="Messages queued so far.")
    skipped: int = Field(description="Contacts left out at send time (frequency cap, template).")
    created_at: datetime | None
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    canceled_at: datetime | None


class BroadcastCanceled(BroadcastOut):
    withdrawn: int = Field(description="Its messages still waiting in the outbox, now canceled.")


class ScheduleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    send_at: str | None = Field(
        None,
        description='"YYYY-MM-DD HH:MM" in the workspace zone (each contact\'s with local_time), or "now".',
    )
    local_time: bool | None = None


class TestSendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(description="Where the test goes: any address.")
    contact: str | None = Field(None, description="Render it as for this contact (email or id).")


class TestSendOut(BaseModel):
    to: str
    subject: str
    status: str = Field(description="`captured` (dev inbox), `sent` or `failed`.")
    message_id: str
    error: str | None


class WorkspaceProblem(BaseModel):
    line: int | None
    key: str
    message: str


class WorkspaceChanges(BaseModel):
    workspace: str
    changed: bool
    settings_changed: bool
    sequences_created: list[str]
    sequences_versioned: list[str]
    sequences_archived: list[str]
    lines: list[str]


class WorkspaceValidation(BaseModel):
    valid: bool
    problems: list[WorkspaceProblem]
    changes: WorkspaceChanges | None = Field(description="What applying it would change (valid files only).")


class CountsOut(BaseModel):
    sent: int
    delivered: int
    opened: int
    clicked: int
    replied: int
    bounced: int
    unsubscribed: int
    complained: int


class VariantReportOut(CountsOut):
    variant: str | None


class StepReportOut(CountsOut):
    step: str
    type: str
    removed: bool
    variants: list[VariantReportOut]


class SequenceReportOut(BaseModel):
    sequence: str
    version: int
    totals: CountsOut
    steps: list[StepReportOut]


class BroadcastReportOut(BaseModel):
    broadcast: BroadcastOut
    totals: CountsOut
