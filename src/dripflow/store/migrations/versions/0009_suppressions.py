"""Suppressions: the addresses of contacts deleted while blacklisted or unsubscribed.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24

A contact deleted (by ``DELETE /v1/contacts/…`` or ``dripflow contacts clean-up``, SPEC L5) while
blacklisted (L2) or unsubscribed from everything (L3) leaves a row here, keyed by a SHA-256 of its
normalised address, so that the address coming back (an import, a form) starts as it was left.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("workspace_id", sa.String(), nullable=False),
        sa.Column("address_hash", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "address_hash", name="pk_suppressions"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_suppressions_workspace_id_workspaces"
        ),
        sa.CheckConstraint("status IN ('blacklisted', 'unsubscribed')", name="ck_suppressions_status"),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
