"""The scheduler's index: enrollments by (workspace, status, due time).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

The claim (``status IN (...) AND due_at <= now ORDER BY due_at`` within a workspace) and the next
due time (``min(due_at)`` per status) read only the rows they need with it; without it SQLite
scanned every enrollment of the workspace on every pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_enrollments_workspace_id_status_due_at", "enrollments", ["workspace_id", "status", "due_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_enrollments_workspace_id_status_due_at", table_name="enrollments")
