"""Delivery and outbound queues: message attempts and release time, webhook deliveries, broadcasts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Written by hand and frozen, like 0001 and 0002; a test checks that the schema at head equals the
models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
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


def _int(name: str, *, nullable: bool = False, default: str | None = None) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=nullable, server_default=default)


def _big(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(_int("attempts", default="0"))
        batch.add_column(_at("not_before", nullable=True))
        batch.add_column(_at("next_attempt_at", nullable=True))
        batch.add_column(_text("last_error", nullable=True))
    op.create_index("ix_messages_status_next_attempt_at", "messages", ["status", "next_attempt_at"])

    op.create_table(
        "webhook_deliveries",
        _id(),
        _text("workspace_id"),
        _text("key"),
        _text("url"),
        _text("event"),
        _big("contact_id", nullable=True),
        sa.Column("payload", _json(), nullable=False),
        _text("status"),
        _int("attempts", default="0"),
        _at("next_attempt_at"),
        _text("last_error", nullable=True),
        _int("response_status", nullable=True),
        _at("created_at"),
        _at("delivered_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_webhook_deliveries_workspace_id_workspaces"
        ),
        sa.UniqueConstraint("workspace_id", "key", name="uq_webhook_deliveries_workspace_id_key"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_webhook_deliveries_status_next_attempt_at", "webhook_deliveries", ["status", "next_attempt_at"]
    )

    op.create_table(
        "broadcast_runs",
        _text("workspace_id"),
        _text("broadcast_id"),
        _text("status"),
        _at("due_at"),
        _at("started_at", nullable=True),
        _at("finished_at", nullable=True),
        _int("queued", default="0"),
        _int("skipped", default="0"),
        sa.PrimaryKeyConstraint("workspace_id", "broadcast_id", name="pk_broadcast_runs"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_broadcast_runs_workspace_id_workspaces"
        ),
    )
    op.create_index("ix_broadcast_runs_status_due_at", "broadcast_runs", ["status", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_broadcast_runs_status_due_at", table_name="broadcast_runs")
    op.drop_table("broadcast_runs")
    op.drop_index("ix_webhook_deliveries_status_next_attempt_at", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_messages_status_next_attempt_at", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("last_error")
        batch.drop_column("next_attempt_at")
        batch.drop_column("not_before")
        batch.drop_column("attempts")
