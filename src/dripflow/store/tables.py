"""The relational schema, as SQLAlchemy 2 typed declarative models.

Rules every table follows:

* SPEC §1 "data never crosses workspaces": every table but ``workspaces`` carries ``workspace_id``
  and its first index starts with it. Rows that hang off a contact reference it through the
  composite key ``(workspace_id, contact_id)``, so the database itself refuses a tag, list
  membership or fact whose workspace differs from its contact's.
* Time is stored as UTC (:class:`UTCDateTime`) and always read back as an aware UTC datetime. No
  column defaults to "now": callers pass the time from their Clock, so a simulation run under a
  virtual clock writes the same rows every time.
* Constraint names come from :data:`NAMING_CONVENTION`, so later migrations (batch mode on SQLite)
  can address them by name on both databases.

The migration ``0001_initial`` creates exactly this schema; a test compares the two. Change both
together, in a new migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    event,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

LeadStatus = Literal["active", "inactive", "blacklisted"]
LEAD_STATUSES: tuple[LeadStatus, ...] = ("active", "inactive", "blacklisted")
SequenceStatus = Literal["draft", "active", "paused", "archived"]
SEQUENCE_STATUSES: tuple[SequenceStatus, ...] = ("draft", "active", "paused", "archived")
ADDRESS_KEYS: tuple[str, ...] = ("line1", "line2", "city", "region", "postal_code", "country")


class UTCDateTime(TypeDecorator[datetime]):
    """An instant in time: naive UTC on SQLite, ``timestamptz`` on PostgreSQL, aware UTC in Python.

    Naive datetimes are rejected rather than guessed at: a naive value is a wall time in some
    unknown zone, and storing it as UTC would shift sends by hours (SPEC T1).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(DateTime(timezone=False))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given where a UTC instant is required")
        value = value.astimezone(UTC)
        # SQLite has no time zone type; its text timestamps sort correctly only if all are UTC.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSON documents: JSONB on PostgreSQL (indexable, compact), JSON text elsewhere. Values are plain
# dicts: to change one, assign a new dict (in-place mutation is not tracked by the ORM). Python
# None is stored as SQL NULL, not as the JSON text 'null', so "IS NULL" means what it says.
PortableJSON = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# Surrogate keys: BIGINT on PostgreSQL; on SQLite only "INTEGER PRIMARY KEY" is an auto-numbered
# rowid alias, so the type must be INTEGER there (it is 64-bit anyway).
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def _sqlite_no_reuse() -> dict[str, Any]:
    """Table options for auto-numbered tables: never reuse an id on SQLite either.

    PostgreSQL sequences never hand out an id twice; with AUTOINCREMENT SQLite behaves the same,
    so one history yields the same ids on both databases (simulations rely on deterministic ids).
    """
    return {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Workspace(Base):
    """One account (SPEC §1). ``definition`` is the whole applied workspace document (SPEC §2)."""

    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    timezone: Mapped[str] = mapped_column(String)
    definition: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    definition_hash: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A4: automation id -> ISO time its trigger was applied (NULL: applied before this was kept).
    rules_since: Mapped[dict[str, str] | None] = mapped_column(PortableJSON)


class Contact(Base):
    """A lead (SPEC §1). ``email`` is stored normalised (see :mod:`dripflow.store.contacts`).

    ``lead_status`` follows SPEC L1; it is maintained by the engine, which knows about enrollments,
    so a new contact starts ``inactive``. ``unsubscribed_at`` is the global unsubscribe (L3) and
    ``email_suggestion`` a likely fix for a mistyped domain (L4).
    """

    __tablename__ = "contacts"
    __table_args__ = (
        # Targets of the composite foreign keys below; also the "list a workspace's contacts" index.
        UniqueConstraint("workspace_id", "id"),
        UniqueConstraint("workspace_id", "email"),
        Index("ix_contacts_workspace_id_phone", "workspace_id", "phone"),
        CheckConstraint("lead_status IN ('active', 'inactive', 'blacklisted')", name="lead_status"),
        _sqlite_no_reuse(),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String, ForeignKey("workspaces.id"))
    email: Mapped[str | None] = mapped_column(String)
    phone: Mapped[str | None] = mapped_column(String)
    first_name: Mapped[str | None] = mapped_column(String)
    last_name: Mapped[str | None] = mapped_column(String)
    timezone: Mapped[str | None] = mapped_column(String)
    source: Mapped[str | None] = mapped_column(String)
    owner: Mapped[str | None] = mapped_column(String)
    address: Mapped[dict[str, Any] | None] = mapped_column(PortableJSON)
    fields: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    score: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lead_status: Mapped[str] = mapped_column(String, default="inactive", server_default="inactive")
    lead_status_reason: Mapped[str | None] = mapped_column(String)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    email_suggestion: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


def _contact_fk() -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["workspace_id", "contact_id"], ["contacts.workspace_id", "contacts.id"], ondelete="CASCADE"
    )


class ContactList(Base):
    """A contact's subscription to a list. Unsubscribing keeps the row, stamped (SPEC L3)."""

    __tablename__ = "contact_lists"
    __table_args__ = (
        _contact_fk(),
        Index("ix_contact_lists_workspace_id_list", "workspace_id", "list"),
        Index("ix_contact_lists_workspace_id_contact_id", "workspace_id", "contact_id"),
    )

    workspace_id: Mapped[str] = mapped_column(String)
    contact_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    list: Mapped[str] = mapped_column(String, primary_key=True)
    subscribed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ContactTag(Base):
    """A tag on a contact."""

    __tablename__ = "contact_tags"
    __table_args__ = (
        _contact_fk(),
        Index("ix_contact_tags_workspace_id_tag", "workspace_id", "tag"),
        Index("ix_contact_tags_workspace_id_contact_id", "workspace_id", "contact_id"),
    )

    workspace_id: Mapped[str] = mapped_column(String)
    contact_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tag: Mapped[str] = mapped_column(String, primary_key=True)
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Fact(Base):
    """Something the contact did elsewhere, kept as history for conditions to read (SPEC §1 fact).

    ``kind`` names what happened (``purchase``, ``page_visit``, ``webinar_attended`` …), ``key`` the
    thing it happened to (the product, page, video … name) and ``detail`` the rest.
    """

    __tablename__ = "facts"
    __table_args__ = (
        _contact_fk(),
        Index("ix_facts_workspace_id_contact_id_kind_key", "workspace_id", "contact_id", "kind", "key"),
        _sqlite_no_reuse(),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String)
    contact_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String)
    key: Mapped[str | None] = mapped_column(String)
    detail: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class Event(Base):
    """The append-only log of everything that happened (SPEC X2; idempotency keys, SPEC D3).

    Rows are never updated or deleted: :class:`dripflow.store.events.EventLog` offers no way to, and
    the ORM refuses to flush a change to a loaded event. ``contact_id`` is deliberately not a
    foreign key: the log outlives the contacts it mentions.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("workspace_id", "idempotency_key"),
        Index("ix_events_workspace_id_contact_id_occurred_at", "workspace_id", "contact_id", "occurred_at"),
        _sqlite_no_reuse(),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String, ForeignKey("workspaces.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String)
    type: Mapped[str] = mapped_column(String)
    contact_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """Who did what to what, and when: deliberate changes such as lifting a blacklisting (SPEC L2)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_workspace_id_target_at", "workspace_id", "target", "at"),
        _sqlite_no_reuse(),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String, ForeignKey("workspaces.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String)
    action: Mapped[str] = mapped_column(String)
    target: Mapped[str] = mapped_column(String)
    detail: Mapped[dict[str, Any]] = mapped_column(PortableJSON)


class Sequence(Base):
    """A sequence's identity and live state; its definitions live in :class:`SequenceVersion`."""

    __tablename__ = "sequences"
    __table_args__ = (CheckConstraint("status IN ('draft', 'active', 'paused', 'archived')", name="status"),)

    workspace_id: Mapped[str] = mapped_column(String, ForeignKey("workspaces.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String, primary_key=True)
    status: Mapped[str] = mapped_column(String)
    current_version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SequenceVersion(Base):
    """One applied definition of a sequence. Versions are kept forever, so history can be explained."""

    __tablename__ = "sequence_versions"
    __table_args__ = (
        ForeignKeyConstraint(["workspace_id", "sequence_id"], ["sequences.workspace_id", "sequences.id"]),
    )

    workspace_id: Mapped[str] = mapped_column(String, primary_key=True)
    sequence_id: Mapped[str] = mapped_column(String, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    definition_hash: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


@event.listens_for(Event, "before_update")
@event.listens_for(Event, "before_delete")
def _events_are_append_only(_mapper: Mapper[Event], _connection: Any, target: Event) -> None:
    raise TypeError(f"event {target.id} is append-only: events are never updated or deleted")


# --------------------------------------------------------------------------------------------------
# The engine's tables (migration 0002): enrollments, step runs, the outbox, tasks, fulfillment,
# print jobs and the journal.


class Enrollment(Base):
    """One contact's passage through one sequence (SPEC §6).

    ``open_key`` is the sequence id while the enrollment is open and NULL once it has closed: the
    unique constraint on it makes "at most one open enrollment per sequence" (S1) a rule the
    database enforces, even with several workers. ``next_step`` is the step waiting to fire,
    ``last_step`` the last one completed (S7: the next step is always the one after it in the
    sequence's current order), ``base_at`` the moment that step fired (T3), ``step_due_at`` when
    the waiting step was first due (before any hold moved ``due_at``; it names a date step's
    occurrence). ``due_at`` is what the scheduler claims by; NULL when nothing is due (finished,
    blocked, waiting for a task).
    ``runs`` counts step occurrences: the outbox key of each message is built from it (D3).
    """

    __tablename__ = "enrollments"
    __table_args__ = (
        _contact_fk(),
        UniqueConstraint("workspace_id", "contact_id", "open_key"),
        Index("ix_enrollments_status_due_at", "status", "due_at"),
        Index("ix_enrollments_workspace_id_status_due_at", "workspace_id", "status", "due_at"),
        Index("ix_enrollments_workspace_id_sequence_id_status", "workspace_id", "sequence_id", "status"),
        _sqlite_no_reuse(),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String)
    contact_id: Mapped[int] = mapped_column(BigInteger)
    sequence_id: Mapped[str] = mapped_column(String)
    open_key: Mapped[str | None] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    reason: Mapped[str | None] = mapped_column(String)
    next_step: Mapped[str | None] = mapped_column(String)
    last_step: Mapped[str | None] = mapped_column(String)
    base_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    step_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    wait_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    mailbox: Mapped[str | None] = mapped_column(String)
    loops: Mapped[int] = mapped_column(Integer)
    runs: Mapped[int] = mapped_column(Integer)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A3: the cascade (originating event, depth) an automation or start rule made it in, if any.
    cascade_origin: Mapped[str | None] = mapped_column(String)
    cascade_depth: Mapped[int | None] = mapped_column(Integer)
    cascade_fired: Mapped[list[str] | None] = mapped_column(PortableJSON)  # automations already run in it


class StepRun(Base):
    """One occurrence of one step for one enrollment: sent, executed or skipped, with its reason."""

    __tablename__ = "step_runs"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "occurrence"),
        Index("ix_step_runs_workspace_id_contact_id", "workspace_id", "contact_id"),
        _sqlite_no_reuse(),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String)
    enrollment_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("enrollments.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigInteger)
    sequence_id: Mapped[str] = mapped_column(String)
    step_id: Mapped[str] = mapped_column(String)
    occurrence: Mapped[str] = mapped_column(String)
    outcome: Mapped[str] = mapped_column(String)
    reason: Mapped[str | None] = mapped_column(String)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class Message(Base):
    """The outbox: one row per message built (SPEC D3: ``key`` is unique per workspace).

    A step occurrence's key is ``enrollment:<id>:<occurrence>``, a broadcast's
    ``broadcast:<id>:<contact>``, so a retried or crashed run can never queue a second copy.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("workspace_id", "key"),
        Index("ix_messages_workspace_id_contact_id_created_at", "workspace_id", "contact_id", "created_at"),
        Index("ix_messages_workspace_id_mailbox_created_at", "workspace_id", "mailbox", "created_at"),
        Index("ix_messages_status", "status"),
        Index("ix_messages_status_next_attempt_at", "status", "next_attempt_at"),
        _sqlite_no_reuse(),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String, ForeignKey("workspaces.id"))
    key: Mapped[str] = mapped_column(String)
    contact_id: Mapped[int] = mapped_column(BigInteger)
    enrollment_id: Mapped[int | None] = mapped_column(BigInteger)
    sequence_id: Mapped[str | None] = mapped_column(String)
    step_id: Mapped[str | None] = mapped_column(String)
    broadcast_id: Mapped[str | None] = mapped_column(String)
    channel: Mapped[str] = mapped_column(String)
    recipient: Mapped[str] = mapped_column(String)
    sender: Mapped[str | None] = mapped_column(String)
    mailbox: Mapped[str | None] = mapped_column(String)
    template: Mapped[str] = mapped_column(String)
    variant: Mapped[str | None] = mapped_column(String)
    subject: Mapped[str | None] = mapped_column(String)
    body_text: Mapped[str] = mapped_column(String)
    body_html: Mapped[str | None] = mapped_column(String)
    in_reply_to: Mapped[str | None] = mapped_column(String)
    message_id: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Delivery (0003): tries so far, not to be sent before (a broadcast's local time, B4), when to
    # try again after a temporary failure (D5), and the last failure's text.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String)


class WebhookDelivery(Base):
    """A durable outgoing webhook (SPEC A2): queued in the engine's transaction, delivered by the
    worker with retries and backoff; ``key`` is unique per workspace so nothing is queued twice."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("workspace_id", "key"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        _sqlite_no_reuse(),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String, ForeignKey("workspaces.id"))
    key: Mapped[str] = mapped_column(String)
    url: Mapped[str] = mapped_column(String)
    event: Mapped[str] = mapped_column(String)
    contact_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    status: Mapped[str] = mapped_column(String)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String)
    response_status: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BroadcastRun(Base):
    """One broadcast of the workspace file being sent (B1–B4): due, sending, done."""

    __tablename__ = "broadcast_runs"
    __table_args__ = (Index("ix_broadcast_runs_status_due_at", "status", "due_at"),)

    workspace_id: Mapped[str] = mapped_column(String, ForeignKey("workspaces.id"), primary_key=True)
    broadcast_id: Mapped[str] = mapped_column(String, primary_key=True)
    status: Mapped[str] = mapped_column(String)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    queued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    skipped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiBroadcast(Base):
    """A broadcast created through the API (migration 0007_api_broadcasts), not the workspace file.

    ``definition`` has the workspace file's broadcast shape (SPEC §2; ``send_at`` may be missing
    while a draft). ``status`` is what the user decided: ``draft``, ``scheduled`` or ``canceled``;
    whether a scheduled one is sending or sent is its :class:`BroadcastRun`'s business, kept under
    the same id (the ids of API and file broadcasts never meet: see docs/api.md).
    """

    __tablename__ = "api_broadcasts"
    __table_args__ = (CheckConstraint("status IN ('draft', 'scheduled', 'canceled')", name="status"),)

    workspace_id: Mapped[str] = mapped_column(String, ForeignKey("workspaces.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String, primary_key=True)
    status: Mapped[str] = mapped_column(String)
    definition: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Suppression(Base):
    """An address whose contact was deleted while blacklisted or unsubscribed from everything
    (SPEC L2, L3, L5): a contact created later with that address starts as it was left, so that
    deleting a contact never makes a complainer or a spam trap mailable again.

    Only a SHA-256 of the normalised address is kept (:func:`dripflow.store.suppressions.address_hash`):
    enough to recognise the address when it comes back, not to read it.
    """

    __tablename__ = "suppressions"
    __table_args__ = (CheckConstraint("status IN ('blacklisted', 'unsubscribed')", name="status"),)

    workspace_id: Mapped[str] = mapped_column(String, ForeignKey("workspaces.id"), primary_key=True)
    address_hash: Mapped[str] = mapped_column(String, primary_key=True)
    status: Mapped[str] = mapped_column(String)
    reason: Mapped[str | None] = mapped_column(String)
    since: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiKey(Base):
    """An API key (SPEC §10): only a hash of its secret is kept; ``prefix`` finds it, ``role`` is
    admin, write or read, and it sees one workspace only."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_workspace_id", "workspace_id"),)

    prefix: Mapped[str] = mapped_column(String, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String, ForeignKey("workspaces.id"))
    secret_hash: Mapped[str] = mapped_column(String)
    role: Mapped[str] = mapped_column(String)
    label: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Task(Base):
    """A to-do created by a task step (SPEC S8)."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_workspace_id_contact_id", "workspace_id", "contact_id"),
        _sqlite_no_reuse(),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String)
    contact_id: Mapped[int] = mapped_column(BigInteger)
    enrollment_id: Mapped[int] = mapped_column(BigInteger)
    sequence_id: Mapped[str] = mapped_column(String)
    step_id: Mapped[str] = mapped_column(String)
    title: Mapped[str] = mapped_column(String)
    assignee: Mapped[str] = mapped_column(String)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Fulfillment(Base):
    """A contact added to a fulfillment list (S8 ``fulfillment``) or a postcard print job (S8)."""

    __tablename__ = "fulfillments"
    __table_args__ = (
        Index("ix_fulfillments_workspace_id_kind_list", "workspace_id", "kind", "list"),
        _sqlite_no_reuse(),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)
    list: Mapped[str] = mapped_column(String)
    contact_id: Mapped[int] = mapped_column(BigInteger)
    enrollment_id: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class JournalEntry(Base):
    """What the engine did and why, in the order it did it: the simulation log (SPEC X3) and the
    source of ``explain`` (X5). Written by the same code in production and in simulation."""

    __tablename__ = "journal"
    __table_args__ = (
        Index("ix_journal_workspace_id_contact_id_id", "workspace_id", "contact_id", "id"),
        # Records of one kind (refusals, automations fired) for the API (0007_api_broadcasts).
        Index("ix_journal_workspace_id_kind_id", "workspace_id", "kind", "id"),
        _sqlite_no_reuse(),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[str] = mapped_column(String)
    contact_id: Mapped[int | None] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
