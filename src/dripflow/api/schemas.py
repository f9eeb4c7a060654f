"""Response shapes shared by several routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dripflow.store.tables import Enrollment

__all__ = [
    "AddressIn",
    "AutomationOut",
    "BroadcastCanceled",
    "BroadcastOut",
    "BroadcastReportOut",
    "ContactIn",
    "ContactPage",
    "ContactPatch",
    "ContactSummary",
    "CountsOut",
    "Deleted",
    "EnrollRequest",
    "EnrollmentOut",
    "InboundEvent",
    "InboundResult",
    "MembershipChange",
    "OutboxItem",
    "OutboxMessage",
    "OutboxPage",
    "ProviderEvent",
    "ProviderResult",
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
    "TimelineItem",
    "TimelinePage",
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


# -- contacts: what a caller sends (issue 6) -----------------------------------------------------

FieldInput = str | int | float | bool | None


class AddressIn(BaseModel):
    """A postal address (for postcard steps, S8); it replaces the stored one as a whole."""

    model_config = ConfigDict(extra="forbid")

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None


class ContactIn(BaseModel):
    """A contact to create, or to update when the workspace already has its email address.

    Absent or null attributes are left as they are; ``fields`` is merged key by key (a key given
    as null removes that field). Every custom field must be declared in the workspace file.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "ann@example.com", "first_name": "Ann"}]},
    )

    email: str = Field(description="The contact's identity in the workspace (stored lower-cased).")
    phone: str | None = Field(None, description="International form, such as +15550100.")
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = Field(None, description="An IANA name such as America/New_York.")
    source: str | None = None
    owner: str | None = None
    address: AddressIn | None = None
    fields: dict[str, FieldInput] | None = None


class ContactPatch(BaseModel):
    """The attributes to change. Absent: unchanged; null: removed (the email cannot be removed);
    ``fields`` is merged key by key, a key given as null removes that field."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"first_name": "Ann", "fields": {"plan": "pro"}}]}
    )

    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = None
    source: str | None = None
    owner: str | None = None
    address: AddressIn | None = None
    fields: dict[str, FieldInput] | None = None


# -- contacts: what the API answers -----------------------------------------------------------------


class ContactSummary(BaseModel):
    """One contact in a search result."""

    id: int
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    lead_status: str
    score: int
    lists: list[str]
    tags: list[str]
    created_at: datetime


class ContactPage(BaseModel):
    items: list[ContactSummary]
    next_cursor: str | None = Field(
        description="Pass it back as `cursor` for the next page; null at the end."
    )


class MembershipChange(BaseModel):
    """The contact's lists and tags after a subscribe, unsubscribe, tag or untag."""

    changed: bool = Field(description="False when it was a no-op (already so): then nothing fired (A1).")
    lists: list[str]
    tags: list[str]


class Deleted(BaseModel):
    deleted: bool
    canceled_enrollments: list[str] = Field(
        description="Sequences whose open enrollment was canceled, reason `contact_deleted`."
    )
    canceled_messages: int = Field(description="Queued messages to the contact that will not be sent.")


class TimelineItem(BaseModel):
    """One thing in a contact's history.

    ``source``: ``event`` (an event received, as logged), ``fact`` (what the contact did: an open,
    a click, a purchase …), ``journal`` (what the engine decided: enrollments, steps, statuses,
    automations, the same records ``explain`` tells) or ``message`` (an email or SMS built for
    the contact). ``kind`` is the event type, fact kind, journal kind, or ``message``.
    """

    at: datetime
    source: str
    kind: str
    data: dict[str, Any]


class TimelinePage(BaseModel):
    items: list[TimelineItem]
    next_cursor: str | None


# -- the outbox (dev inbox) --------------------------------------------------------------------------


class OutboxItem(BaseModel):
    id: int
    created_at: datetime
    status: str = Field(description="captured · queued · sending · sent · bounced · failed · canceled")
    channel: str
    recipient: str
    subject: str | None
    contact_id: int
    sequence: str | None
    step: str | None
    broadcast: str | None
    template: str
    variant: str | None
    mailbox: str | None
    message_id: str
    sent_at: datetime | None
    attempts: int
    last_error: str | None


class OutboxMessage(OutboxItem):
    """One message with its bodies: ``text`` and ``html`` as the template rendered them, and
    ``raw``, the whole RFC 5322 email as delivery builds it (headers, footer, unsubscribe link)."""

    sender: str | None
    in_reply_to: str | None
    text: str
    html: str | None
    raw: str | None = Field(description="Null for SMS, or when the message cannot be built.")


class OutboxPage(BaseModel):
    items: list[OutboxItem]
    next_cursor: str | None


# -- inbound mail --------------------------------------------------------------------------------------


class InboundEvent(BaseModel):
    type: str
    message: str | None
    kind: str | None = Field(None, description="For a bounce: hard or soft.")


class InboundResult(BaseModel):
    """What the raw message was and what it did."""

    kind: str = Field(
        description=(
            "`bounce` (RFC 3464 report), `complaint` (RFC 5965 report), `reply`, `auto_reply` "
            "(out-of-office and other automatic answers: not counted as replies) or `not_a_complaint` "
            "(a feedback report of another type, such as not-spam)"
        )
    )
    applied: int
    duplicates: int
    events: list[InboundEvent]
    reason: str | None = Field(None, description="Why nothing was applied, when nothing was.")


class ProviderEvent(BaseModel):
    """One event taken from a provider's webhook, and what became of it."""

    type: str = Field(description="`email.bounced`, `email.complained` or `unsubscribed`.")
    message: str | None = Field(description="The original Message-ID the provider named.")
    kind: str | None = Field(None, description="For a bounce: hard or soft.")
    outcome: Literal["applied", "duplicate", "ignored"] = Field(
        description=(
            "`applied`; `duplicate` (the provider sent it before: applied once, SPEC D3); `ignored` "
            "(not about a message or contact of this workspace, see `reason`)."
        )
    )
    reason: str | None = Field(None, description="Why it was ignored.")


class ProviderResult(BaseModel):
    """What a provider's webhook request held and what it did."""

    provider: Literal["ses", "sendgrid"]
    kind: str = Field(
        description=(
            "SES: the notification type (`Bounce`, `Complaint`, `Delivery` …, or `other` for a message "
            "not from SES), `subscription_confirmed` or `unsubscribe_confirmation`. SendGrid: `batch`."
        )
    )
    received: int = Field(description="Provider events in the request (SES: 1; SendGrid: the batch's size).")
    applied: int
    duplicates: int
    ignored: int
    events: list[ProviderEvent] = Field(
        description="The engine events taken from the request (deliveries, opens … make none)."
    )
    reason: str | None = Field(None, description="Why nothing was applied, when the request held no events.")


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
