"""The engine's tables: enrollments, step runs, the outbox, tasks, fulfillments, the journal.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Written by hand and frozen, like 0001; a test checks that the schema at head equals the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _id() -> sa.Column[int]:
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


def _at(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=nullable)


def _int(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def _big(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "enrollments",
        _id(),
        _text("workspace_id"),
        _big("contact_id"),
        _text("sequence_id"),
        _text("open_key", nullable=True),
        _text("status"),
        _text("reason", nullable=True),
        _text("next_step", nullable=True),
        _text("last_step", nullable=True),
        _at("base_at"),
        _at("due_at", nullable=True),
        _at("step_due_at", nullable=True),
        _at("wait_deadline", nullable=True),
        _at("paused_at", nullable=True),
        _text("mailbox", nullable=True),
        _int("loops"),
        _int("runs"),
        _at("enrolled_at"),
        _at("finished_at", nullable=True),
        _at("closed_at", nullable=True),
        _at("lease_until", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_enrollments"),
        sa.ForeignKeyConstraint(
            ["workspace_id", "contact_id"],
            ["contacts.workspace_id", "contacts.id"],
            name="fk_enrollments_workspace_id_contact_id_contacts",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "workspace_id", "contact_id", "open_key", name="uq_enrollments_workspace_id_contact_id_open_key"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_enrollments_status_due_at", "enrollments", ["status", "due_at"])
    op.create_index(
        "ix_enrollments_workspace_id_sequence_id_status",
        "enrollments",
        ["workspace_id", "sequence_id", "status"],
    )

    op.create_table(
        "step_runs",
        _id(),
        _text("workspace_id"),
        _big("enrollment_id"),
        _big("contact_id"),
        _text("sequence_id"),
        _text("step_id"),
        _text("occurrence"),
        _text("outcome"),
        _text("reason", nullable=True),
        _at("at"),
        sa.PrimaryKeyConstraint("id", name="pk_step_runs"),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollments.id"],
            name="fk_step_runs_enrollment_id_enrollments",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("enrollment_id", "occurrence", name="uq_step_runs_enrollment_id_occurrence"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_step_runs_workspace_id_contact_id", "step_runs", ["workspace_id", "contact_id"])

    op.create_table(
        "messages",
        _id(),
        _text("workspace_id"),
        _text("key"),
        _big("contact_id"),
        _big("enrollment_id", nullable=True),
        _text("sequence_id", nullable=True),
        _text("step_id", nullable=True),
        _text("broadcast_id", nullable=True),
        _text("channel"),
        _text("recipient"),
        _text("sender", nullable=True),
        _text("mailbox", nullable=True),
        _text("template"),
        _text("variant", nullable=True),
        _text("subject", nullable=True),
        _text("body_text"),
        _text("body_html", nullable=True),
        _text("in_reply_to", nullable=True),
        _text("message_id"),
        _text("status"),
        _at("created_at"),
        _at("sent_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_messages_workspace_id_workspaces"
        ),
        sa.UniqueConstraint("workspace_id", "key", name="uq_messages_workspace_id_key"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_messages_workspace_id_contact_id_created_at",
        "messages",
        ["workspace_id", "contact_id", "created_at"],
    )
    op.create_index(
        "ix_messages_workspace_id_mailbox_created_at", "messages", ["workspace_id", "mailbox", "created_at"]
    )
    op.create_index("ix_messages_status", "messages", ["status"])

    op.create_table(
        "tasks",
        _id(),
        _text("workspace_id"),
        _big("contact_id"),
        _big("enrollment_id"),
        _text("sequence_id"),
        _text("step_id"),
        _text("title"),
        _text("assignee"),
        _at("due_at"),
        _at("created_at"),
        _at("completed_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_tasks_workspace_id_contact_id", "tasks", ["workspace_id", "contact_id"])

    op.create_table(
        "fulfillments",
        _id(),
        _text("workspace_id"),
        _text("kind"),
        _text("list"),
        _big("contact_id"),
        _big("enrollment_id"),
        sa.Column("detail", _json(), nullable=False),
        _at("at"),
        sa.PrimaryKeyConstraint("id", name="pk_fulfillments"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_fulfillments_workspace_id_kind_list", "fulfillments", ["workspace_id", "kind", "list"]
    )

    op.create_table(
        "journal",
        _id(),
        _text("workspace_id"),
        _at("at"),
        _text("kind"),
        _big("contact_id", nullable=True),
        sa.Column("data", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_journal"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_journal_workspace_id_contact_id_id", "journal", ["workspace_id", "contact_id", "id"])


def downgrade() -> None:
    for table in ("journal", "fulfillments", "tasks", "messages", "step_runs", "enrollments"):
        op.drop_table(table)
