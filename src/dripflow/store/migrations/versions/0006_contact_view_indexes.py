"""Contact lists and tags by (workspace, contact): what loading contact views asks for.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

Without them SQLite answered ``workspace_id = ? AND contact_id IN (...)`` through the
(workspace, list/tag) index, reading every list or tag row of the workspace for each view load.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_contact_lists_workspace_id_contact_id", "contact_lists", ["workspace_id", "contact_id"]
    )
    op.create_index("ix_contact_tags_workspace_id_contact_id", "contact_tags", ["workspace_id", "contact_id"])


def downgrade() -> None:
    op.drop_index("ix_contact_tags_workspace_id_contact_id", table_name="contact_tags")
    op.drop_index("ix_contact_lists_workspace_id_contact_id", table_name="contact_lists")
