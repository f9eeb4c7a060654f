"""Enrollments remember the cascade that made them (SPEC A3); workspaces when each automation's
trigger came into being (A4).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

An enrollment made by an automation or a start rule records the originating event of that cascade
and its depth. Its steps due at the very moment it was made (no delay) emit their events within
that cascade (the automations that already ran in it do not run again), so a loop through
a sequence (`sequence.finished` → unsubscribe and subscribe again) ends like any other cascade
instead of running forever.

``workspaces.rules_since`` maps each automation to the moment its trigger was applied, so that an
event dated before it (a backdated ingest) does not fire it: triggers are forward-only (A4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("rules_since", _json(), nullable=True))
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("cascade_origin", sa.String(), nullable=True))
        batch.add_column(sa.Column("cascade_depth", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cascade_fired", _json(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("cascade_fired")
        batch.drop_column("cascade_depth")
        batch.drop_column("cascade_origin")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("rules_since")
