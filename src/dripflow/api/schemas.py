"""Response shapes shared by several routes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from dripflow.store.tables import Enrollment

__all__ = ["EnrollmentOut", "enrollment_out"]


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
