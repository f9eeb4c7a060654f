"""Fixtures for the store tests: two workspaces to prove data never crosses between them (SPEC §1)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from dripflow.store.tables import Workspace

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def add_workspace(session: Session, workspace_id: str, at: datetime = T0) -> Workspace:
    workspace = Workspace(
        id=workspace_id,
        name=workspace_id.title(),
        timezone="America/New_York",
        definition={"workspace": {"id": workspace_id}},
        definition_hash="0" * 64,
        created_at=at,
        updated_at=at,
    )
    session.add(workspace)
    session.flush()
    return workspace


@pytest.fixture
def workspaces(session: Session) -> tuple[str, str]:
    """Two committed workspaces, ``acme`` and ``globex``."""
    add_workspace(session, "acme")
    add_workspace(session, "globex")
    session.commit()
    return "acme", "globex"
