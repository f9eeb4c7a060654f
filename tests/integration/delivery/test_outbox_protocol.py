"""How the outbox uses the database while it delivers (docs/decisions.md "Delivery"), with a
transport that needs no server: the claim commits before any message is built, outcomes are
written with one statement per transaction, and a worker never has more than
``UNRECORDED_PER_SEND`` x connections messages sent but not yet recorded (the duplicate window)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, update

from dripflow.core.clock import VirtualClock
from dripflow.core.validate import load_workspace_text
from dripflow.delivery import outbox
from dripflow.delivery.outbox import UNRECORDED_PER_SEND, deliver_pending
from dripflow.engine.broadcasts import send_due_broadcasts
from dripflow.engine.context import Ctx, load_rules
from dripflow.store.contacts import ContactData, ContactRepo
from dripflow.store.database import transaction
from dripflow.store.tables import Message
from dripflow.store.workspaces import apply_workspace

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WORKSPACE = """\
workspace: {id: shop, name: Shop, timezone: UTC, physical_address: "1 Main St", base_url: "https://m.shop.test"}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
delivery:
  smtp: {host: smtp.invalid, port: 25, security: none}
lists: [news]
templates:
  news: {subject: "News for {{ contact.first_name }}", text: "Hello {{ contact.first_name }}."}
broadcasts:
  - {id: news, send_at: "2026-03-02 08:00", audience: {on_list: news}, template: news}
"""


def _queue(engine: Engine, count: int) -> None:
    """``count`` queued messages (a broadcast to as many contacts)."""
    emails = [f"c{n}@x.test" for n in range(count)]
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(WORKSPACE, "shop.yaml"), now=NOW, actor="test")
        repo = ContactRepo(session, "shop")
        repo.upsert_many(
            [ContactData(email=email, first_name=f"C{n}") for n, email in enumerate(emails)], at=NOW
        )
        repo.subscribe_many(emails, "news", at=NOW)
    with transaction(engine) as session:
        assert (
            send_due_broadcasts(Ctx(session, "shop", load_rules(session, "shop"), VirtualClock(NOW))) == count
        )


def _statuses(engine: Engine) -> list[str]:
    with transaction(engine) as session:
        return list(session.scalars(select(Message.status).order_by(Message.id)))


class Accepting:
    """A transport that accepts everything at once (``on_send`` sees each message first)."""

    def __init__(self, max_connections: int = 4) -> None:
        self.max_connections = max_connections
        self.sent: list[bytes] = []
        self.on_send: Any = None

    async def send(self, data: bytes, envelope_from: str, recipients: Sequence[str]) -> None:
        if self.on_send is not None:
            self.on_send()
        self.sent.append(data)
        await asyncio.sleep(0)

    async def close(self) -> None:
        pass


@contextmanager
def _statements(engine: Engine) -> Iterator[list[tuple[str, bool]]]:
    """Every statement sent to the database meanwhile: (SQL, whether it was an executemany)."""
    seen: list[tuple[str, bool]] = []

    def hook(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        seen.append((" ".join(statement.split()), executemany))

    event.listen(engine, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", hook)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_claim_is_committed_before_the_messages_are_built(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's write lock is not held while a batch is built: another writer gets it at once."""
    _queue(engine, 3)
    database = engine.url.database
    assert database is not None
    built = outbox.build_message
    locked: list[bool] = []

    def build_and_try_the_lock(*args: Any, **kwargs: Any) -> Any:
        other = sqlite3.connect(database, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # fails at once with "database is locked" if held
            other.execute("ROLLBACK")
            locked.append(False)
        except sqlite3.OperationalError:
            locked.append(True)
        finally:
            other.close()
        return built(*args, **kwargs)

    monkeypatch.setattr(outbox, "build_message", build_and_try_the_lock)
    assert deliver_pending(engine, "shop", VirtualClock(NOW), Accepting()) == 3
    assert locked == [False, False, False]
    assert _statuses(engine) == ["sent"] * 3


def test_outcomes_arriving_together_are_one_statement(engine: Engine) -> None:
    """Recording a set of outcomes is one UPDATE (executemany on SQLite, UPDATE … FROM (VALUES …)
    on PostgreSQL), fenced by the claim's attempts: a taken-over row keeps the newer claim's state."""
    _queue(engine, 5)
    clock = VirtualClock(NOW)
    batch, taken = outbox.claim_due(engine, "shop", clock, 10)
    assert taken == 5
    # Another worker took the last one over (its lease ran out): attempts moved on.
    with transaction(engine) as session:
        row = session.get(Message, batch[-1].id)
        assert row is not None
        row.attempts += 1
    outcomes = [outbox.Outcome(item, "sent") for item in batch[:3]]
    outcomes.append(outbox.Outcome(batch[3], "queued", "451 later", retry_at=NOW))
    outcomes.append(outbox.Outcome(batch[4], "sent"))
    with _statements(engine) as seen:
        outbox.record_outcomes(engine, "shop", clock, outcomes)
    updates = [(sql, many) for sql, many in seen if sql.startswith("UPDATE")]
    assert len(updates) == 1, seen
    assert _statuses(engine) == ["sent", "sent", "sent", "queued", "sending"]


def test_a_worker_never_has_more_than_its_window_sent_but_unrecorded(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With recording slowed down, sending waits for it: at any moment at most
    UNRECORDED_PER_SEND x connections messages have been accepted and not recorded."""
    _queue(engine, 60)
    transport = Accepting(max_connections=2)
    bound = UNRECORDED_PER_SEND * transport.max_connections
    recorded = 0
    worst = 0
    original = outbox.record_outcomes

    def slow_record(*args: Any, **kwargs: Any) -> None:
        nonlocal recorded
        items = list(args[3])
        time.sleep(0.01)
        original(*args[:3], items, **kwargs)
        recorded += len(items)

    def check() -> None:
        nonlocal worst
        worst = max(worst, len(transport.sent) + 1 - recorded)

    transport.on_send = check
    monkeypatch.setattr(outbox, "record_outcomes", slow_record)
    assert deliver_pending(engine, "shop", VirtualClock(NOW), transport) == 60
    assert _statuses(engine) == ["sent"] * 60
    assert 1 < worst <= bound


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_outcomes_written_through_the_driver_store_instants_as_sqlalchemy_does(engine: Engine) -> None:
    """On SQLite the outcome write bypasses SQLAlchemy's parameter processing: the instants it
    stores must be the very text SQLAlchemy stores (the claim and due queries compare that text)."""
    _queue(engine, 3)
    clock = VirtualClock(datetime(2026, 3, 2, 9, 0, 0, 250_000, tzinfo=UTC))
    batch, _taken = outbox.claim_due(engine, "shop", clock, 10)
    retry = datetime(2026, 3, 2, 9, 1, tzinfo=UTC)
    outbox.record_outcomes(
        engine,
        "shop",
        clock,
        [outbox.Outcome(batch[0], "sent"), outbox.Outcome(batch[1], "queued", "451 later", retry_at=retry)],
    )
    with transaction(engine) as session:  # the third row, written by SQLAlchemy itself
        session.execute(
            update(Message)
            .where(Message.id == batch[2].id)
            .values(sent_at=clock.now(), next_attempt_at=retry)
        )
    database = engine.url.database
    assert database is not None
    raw = sqlite3.connect(database)
    try:
        stored = raw.execute("SELECT sent_at, next_attempt_at FROM messages ORDER BY id").fetchall()
    finally:
        raw.close()
    assert stored[0][0] == stored[2][0]  # sent_at: the record's `now`, as SQLAlchemy writes it
    assert stored[1][1] == stored[2][1]  # next_attempt_at: the retry time, likewise
