"""`dripflow serve` as an operator runs it (SPEC §10): the API key check is a read, and the real
command in a child process: SIGTERM finishes the work in flight and exits 0, logs are one JSON
object per line, and ``--demo`` brings up a workspace whose enrollments advance within minutes."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from dripflow.api import deps
from dripflow.core.validate import load_workspace_text
from dripflow.store.apikeys import Credential, create_key
from dripflow.store.database import transaction
from dripflow.store.workspaces import apply_workspace

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WORKSPACE = """\
workspace: {id: shop, name: Shop, timezone: UTC, physical_address: "1 Main St"}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
lists: [news]
"""


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_key_check_does_not_wait_for_the_write_lock(engine: Engine) -> None:
    """A request's key check is a plain read: while another connection holds SQLite's write lock
    (as an ingest does), it still answers at once, and a revoked key is refused at once."""
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(WORKSPACE, "shop.yaml"), now=NOW, actor="test")
        key = create_key(session, "shop", "write", NOW)
    database = engine.url.database
    assert database is not None
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        answers: list[object] = []
        checker = threading.Thread(target=lambda: answers.append(deps._check_key(engine, key)))
        started = time.monotonic()
        checker.start()
        checker.join(timeout=5)
        assert not checker.is_alive(), "the key check waited for the write lock"
        assert time.monotonic() - started < 2
        [credential] = answers
        assert credential == Credential("shop", "write", key.split("_")[1])
        assert deps._check_key(engine, key[:-2] + "xx") is None  # wrong secret
        assert deps._check_key(engine, "df_nope_nope") is None
        holder.execute("UPDATE api_keys SET revoked_at = '2026-03-02 09:00:00'")
        holder.execute("COMMIT")
        assert deps._check_key(engine, key) is None  # revoked: refused from the next request on
    finally:
        holder.close()
