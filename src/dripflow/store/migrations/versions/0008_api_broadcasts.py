"""Broadcasts created through the API, and the journal by (workspace, kind).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23

``api_broadcasts`` holds the broadcasts made with ``POST /v1/broadcasts`` (the workspace file's
own stay in the file): their definition in the file's shape and what the user decided (draft,
scheduled, canceled). The sender reads them next to the file's; their progress is in
``broadcast_runs`` as for any broadcast.

The journal index serves ``GET /v1/enrollments/refusals`` (``not_enrolled`` records, in id order)
and ``GET /v1/automations`` (``automation.fired`` counts) without reading the whole journal of the
workspace.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_broadcasts",
        sa.Column("workspace_id", sa.String(), nullable=False),
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("definition", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("workspace_id", "id", name="pk_api_broadcasts"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_api_broadcasts_workspace_id_workspaces"
        ),
        sa.CheckConstraint("status IN ('draft', 'scheduled', 'canceled')", name="ck_api_broadcasts_status"),
    )
    op.create_index("ix_journal_workspace_id_kind_id", "journal", ["workspace_id", "kind", "id"])


def downgrade() -> None:
    op.drop_index("ix_journal_workspace_id_kind_id", table_name="journal")
    op.drop_table("api_broadcasts")
