"""Broadcasts (SPEC §8 B1–B4, D7) on SQLite and PostgreSQL.

Broadcasts are not wired into ``simulate`` yet, so these tests drive the engine the way the worker
will: apply a workspace, ingest X2 events, then call ``send_due_broadcasts`` in a transaction with
a virtual clock, and read what a user sees: the outbox (``messages``) and the journal (X3 log).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, event, insert, select

from dripflow.core.clock import VirtualClock
from dripflow.core.validate import load_workspace_text
from dripflow.engine.broadcasts import BATCH_SIZE, next_broadcast_due, send_due_broadcasts
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.engine.scheduler import run_once
from dripflow.store.database import transaction
from dripflow.store.tables import BroadcastRun, Contact, ContactList, Enrollment, JournalEntry, Message
from dripflow.store.workspaces import apply_workspace
from dripflow.tracking.tokens import secret_key, verify

WS_ID = "shop"
APPLIED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SEND = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)  # 2026-11-27 09:00 in New York (EST, UTC-5)

BASE = """\
workspace: {id: shop, name: Shop, timezone: America/New_York, default_send_time: "10:00",
            physical_address: "1 Main St", base_url: "https://mail.shop.test"}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
lists: [news, customers]
tags: [customer, vip]
templates:
  bf: {subject: "Black Friday, {{ contact.first_name | default('friend') }}",
       text: "Deals inside. Leave: {{ unsubscribe_url }}"}
  named: {subject: "Hi {{ contact.first_name }}", text: "x"}
  hello: {subject: "Hello", text: "Hi"}
"""


def _workspace(extra: str) -> str:
    return BASE + extra


def _setup(engine: Engine, yaml_text: str, events: list[tuple[datetime, dict[str, Any]]]) -> None:
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(yaml_text, "shop.yaml"), now=APPLIED, actor="test")
    _ingest(engine, events)


def _ingest(engine: Engine, events: list[tuple[datetime, dict[str, Any]]]) -> None:
    items = [InputEvent(n, at, data) for n, (at, data) in enumerate(events, 1)]
    ingest_events(engine, WS_ID, items, Path("events.jsonl"))


def _send(engine: Engine, at: datetime) -> int:
    with transaction(engine) as session:
        ctx = Ctx(session, WS_ID, load_rules(session, WS_ID), VirtualClock(at))
        return send_due_broadcasts(ctx)


def _due(engine: Engine) -> datetime | None:
    with transaction(engine) as session:
        return next_broadcast_due(session, WS_ID)


def _messages(engine: Engine) -> list[Message]:
    with transaction(engine) as session:
        return list(session.scalars(select(Message).order_by(Message.id)))


def _log(engine: Engine, *kinds: str) -> list[tuple[datetime, dict[str, Any]]]:
    with transaction(engine) as session:
        rows = session.execute(select(JournalEntry.at, JournalEntry.data).order_by(JournalEntry.id)).all()
    return [(at, dict(data)) for at, data in rows if not kinds or data["kind"] in kinds]


def _recipients(engine: Engine, broadcast: str = "bf") -> list[str]:
    return sorted(m.recipient for m in _messages(engine) if m.broadcast_id == broadcast)


def _sub(at: datetime, email: str, name: str = "news", **contact: Any) -> tuple[datetime, dict[str, Any]]:
    who: Any = {"email": email, **contact} if contact else email
    return at, {"type": "list.subscribed", "contact": who, "list": name}


ONE_BROADCAST = """\
broadcasts:
  - id: bf
    send_at: "2026-11-27 09:00"
    audience: {all: [{on_list: news}, {not: {has_tag: customer}}]}
    template: bf
"""


def test_b1_audience_is_evaluated_at_send_time(engine: Engine) -> None:
    """B1: who gets the broadcast is decided when it is sent, not when it was scheduled."""
    day1 = APPLIED + timedelta(hours=1)
    _setup(
        engine,
        _workspace(ONE_BROADCAST),
        [
            _sub(day1, "ann@x.test", first_name="Ann"),
            _sub(day1, "bob@x.test"),
            (day1, {"type": "tag.assigned", "contact": "bob@x.test", "tag": "customer"}),
            _sub(day1, "cat@x.test"),
            _sub(day1, "eve@x.test", name="customers"),
        ],
    )
    assert _due(engine) == SEND
    assert _send(engine, SEND - timedelta(minutes=1)) == 0  # not before its time
    assert _messages(engine) == []
    # Between scheduling and sending: cat becomes a customer, dan joins the list.
    before = SEND - timedelta(hours=2)
    _ingest(
        engine,
        [
            (before, {"type": "tag.assigned", "contact": "cat@x.test", "tag": "customer"}),
            _sub(before, "dan@x.test"),
        ],
    )
    assert _send(engine, SEND) == 2
    assert _recipients(engine) == ["ann@x.test", "dan@x.test"]
    sent = _log(engine, "message.sent")
    assert [(at, record["contact"]) for at, record in sent] == [(SEND, "ann@x.test"), (SEND, "dan@x.test")]
    assert sent[0][1] == {
        "kind": "message.sent",
        "contact": "ann@x.test",
        "channel": "email",
        "to": "ann@x.test",
        "broadcast": "bf",
        "template": "bf",
        "subject": "Black Friday, Ann",
        "mailbox": "ann",
    }
    assert _messages(engine)[1].subject == "Black Friday, friend"
    # Done: nothing more is due, and a later pass sends nothing.
    assert _due(engine) is None
    assert _send(engine, SEND + timedelta(days=1)) == 0
    with transaction(engine) as session:
        run = session.scalars(select(BroadcastRun)).one()
        assert (run.status, run.queued, run.skipped, run.finished_at) == ("finished", 2, 0, SEND)


def test_b1_unsubscribe_link_of_a_broadcast_leaves_everything(engine: Engine) -> None:
    """D1: a broadcast belongs to no sequence, so its unsubscribe link unsubscribes from everything."""
    _setup(engine, _workspace(ONE_BROADCAST), [_sub(APPLIED, "ann@x.test")])
    _send(engine, SEND)
    (message,) = _messages(engine)
    link = message.body_text.split("Leave: ", 1)[1].strip()
    assert link.startswith("https://mail.shop.test/t/u/")
    payload = verify(secret_key(WS_ID), link.rsplit("/", 1)[1])
    assert payload == {"c": message.contact_id, "m": "broadcast:bf:" + str(message.contact_id), "s": None}
    assert message.key == f"broadcast:bf:{message.contact_id}"


def test_b2_blacklisted_and_unsubscribed_contacts_are_left_out(engine: Engine) -> None:
    """B2 / L2 / L3: blacklisted, globally unsubscribed and list-unsubscribed contacts get nothing."""
    at = APPLIED + timedelta(hours=1)
    broadcasts = """\
broadcasts:
  - id: bf
    send_at: "2026-11-27 09:00"
    audience: {any: [{on_list: news}, {on_list: customers}]}
    template: bf
  - id: all-tagged
    send_at: "2026-11-27 09:00"
    audience: {has_tag: vip}
    template: hello
"""
    _setup(
        engine,
        _workspace(broadcasts),
        [
            _sub(at, "ok@x.test"),
            _sub(at, "customer-only@x.test", name="customers"),
            _sub(at, "black@x.test"),
            (at, {"type": "admin.contact.blacklist", "contact": "black@x.test", "reason": "manual"}),
            _sub(at, "gone@x.test"),
            (at, {"type": "unsubscribed", "contact": "gone@x.test", "scope": "all"}),
            # On both lists, then leaves `news`: a broadcast to news (and customers) skips them.
            _sub(at, "left-news@x.test"),
            _sub(at, "left-news@x.test", name="customers"),
            (at, {"type": "list.unsubscribed", "contact": "left-news@x.test", "list": "news"}),
            # An audience naming no list: leaving a list does not matter, leaving everything does.
            _sub(at, "vip-left@x.test"),
            (at, {"type": "tag.assigned", "contact": "vip-left@x.test", "tag": "vip"}),
            (at, {"type": "list.unsubscribed", "contact": "vip-left@x.test", "list": "news"}),
            (at, {"type": "tag.assigned", "contact": "gone@x.test", "tag": "vip"}),
            (at, {"type": "tag.assigned", "contact": "black@x.test", "tag": "vip"}),
        ],
    )
    _send(engine, SEND)
    assert _recipients(engine, "bf") == ["customer-only@x.test", "ok@x.test"]
    assert _recipients(engine, "all-tagged") == ["vip-left@x.test"]


def test_b3_a_contact_gets_a_broadcast_at_most_once(engine: Engine) -> None:
    """B3: repeated passes, a lost run record and a crashed wave never send a second copy."""
    _setup(engine, _workspace(ONE_BROADCAST), [_sub(APPLIED, f"c{n}@x.test") for n in range(3)])
    # A wave that crashes (the transaction rolls back) leaves no trace: the next pass sends it all.
    with pytest.raises(RuntimeError), transaction(engine) as session:
        ctx = Ctx(session, WS_ID, load_rules(session, WS_ID), VirtualClock(SEND))
        assert send_due_broadcasts(ctx) == 3
        raise RuntimeError("worker killed mid-transaction")
    assert _messages(engine) == []
    assert _due(engine) == SEND  # still due: the restart resumes it
    assert _send(engine, SEND + timedelta(minutes=1)) == 3
    assert _send(engine, SEND + timedelta(minutes=2)) == 0
    # Even if the run record were lost, the outbox key keeps it to one message per contact.
    with transaction(engine) as session:
        session.execute(delete(BroadcastRun))
    assert _send(engine, SEND + timedelta(minutes=3)) == 0
    assert _recipients(engine) == ["c0@x.test", "c1@x.test", "c2@x.test"]
    assert len(_log(engine, "message.sent")) == 3


THROTTLED = """\
broadcasts:
  - id: bf
    send_at: "2026-11-27 09:00"
    audience: {on_list: news}
    template: bf
    throttle: 2
"""


def test_a_throttled_broadcast_is_queued_at_once_and_paced_per_minute(engine: Engine) -> None:
    """Broadcast `throttle` (messages per minute; decision, docs/decisions.md): the whole audience
    is chosen and queued at send time (B1), and each message waits for its turn: two a minute.
    The outbox's claim honours it, so delivery goes out at that pace."""
    _setup(engine, _workspace(THROTTLED), [_sub(APPLIED, f"c{n}@x.test") for n in range(5)])
    assert _send(engine, SEND) == 5
    turns = [(m.recipient, m.not_before) for m in _messages(engine)]
    assert turns == [
        ("c0@x.test", SEND),
        ("c1@x.test", SEND),
        ("c2@x.test", SEND + timedelta(minutes=1)),
        ("c3@x.test", SEND + timedelta(minutes=1)),
        ("c4@x.test", SEND + timedelta(minutes=2)),
    ]


LOCAL = """\
broadcasts:
  - id: bf
    send_at: "2026-11-27 09:00"
    local_time: true
    audience: {on_list: news}
    template: bf
"""


def test_b4_local_time_sends_at_the_wall_time_in_each_contact_zone(engine: Engine) -> None:
    """B4: 09:00 in Tokyo, London, New York (no zone: the workspace's) and Los Angeles, each at its
    own instant; the audience of each zone is evaluated at that zone's instant (B1)."""
    at = APPLIED + timedelta(hours=1)
    _setup(
        engine,
        _workspace(LOCAL),
        [
            _sub(at, "tokyo@x.test", timezone="Asia/Tokyo"),
            _sub(at, "london@x.test", timezone="Europe/London"),
            _sub(at, "home@x.test"),
            (
                at,
                {
                    "type": "contact.created",
                    "contact": {"email": "la@x.test", "timezone": "America/Los_Angeles"},
                },
            ),
            _sub(at, "la-leaves@x.test", timezone="America/Los_Angeles"),
        ],
    )
    tokyo, london = datetime(2026, 11, 27, 0, 0, tzinfo=UTC), datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    new_york, los_angeles = SEND, datetime(2026, 11, 27, 17, 0, tzinfo=UTC)
    ticks: list[datetime] = []
    while (due := _due(engine)) is not None and len(ticks) < 10:
        ticks.append(due)
        if due == london:  # after Tokyo's wave and before Los Angeles': the audience changes
            _ingest(
                engine,
                [
                    _sub(due, "la@x.test"),
                    (due, {"type": "list.unsubscribed", "contact": "la-leaves@x.test", "list": "news"}),
                ],
            )
        _send(engine, due)
    assert ticks == [tokyo, london, new_york, los_angeles]
    sent = [(at, record["contact"]) for at, record in _log(engine, "message.sent")]
    assert sent == [
        (tokyo, "tokyo@x.test"),
        (london, "london@x.test"),
        (new_york, "home@x.test"),
        (los_angeles, "la@x.test"),
    ]
    # The run stays open until no zone can still reach 09:00, then closes; nothing is sent twice.
    assert _send(engine, datetime(2026, 11, 28, 0, 0, tzinfo=UTC)) == 0
    with transaction(engine) as session:
        run = session.scalars(select(BroadcastRun)).one()
        assert (run.status, run.queued) == ("finished", 4)
    assert len(_messages(engine)) == 4


def test_b4_a_late_worker_sends_every_zone_whose_time_has_come(engine: Engine) -> None:
    """B4 with a worker that was down: one pass sends all zones already due, later zones wait."""
    at = APPLIED + timedelta(hours=1)
    _setup(
        engine,
        _workspace(LOCAL),
        [
            _sub(at, "tokyo@x.test", timezone="Asia/Tokyo"),
            _sub(at, "london@x.test", timezone="Europe/London"),
            _sub(at, "la@x.test", timezone="America/Los_Angeles"),
        ],
    )
    assert _send(engine, datetime(2026, 11, 27, 10, 0, tzinfo=UTC)) == 2
    assert _recipients(engine) == ["london@x.test", "tokyo@x.test"]
    assert _due(engine) == SEND  # the workspace zone (contacts without one) comes next
    assert _send(engine, SEND) == 0
    assert _due(engine) == datetime(2026, 11, 27, 17, 0, tzinfo=UTC)
    assert _send(engine, datetime(2026, 11, 27, 17, 0, tzinfo=UTC)) == 1
    assert _recipients(engine) == ["la@x.test", "london@x.test", "tokyo@x.test"]


CAPPED = """\
ruleset: {frequency: {max: 1, per: 7d}}
sequences:
  - id: drip
    start_when: [{event: tag.assigned, tag: vip}]
    steps:
      - {id: one, type: email, template: hello}
broadcasts:
  - id: bf
    send_at: "2026-11-27 09:00"
    audience: {on_list: news}
    template: bf
"""


def test_d7_frequency_cap_skips_a_broadcast_contact_and_counts_broadcasts(engine: Engine) -> None:
    """D7: a contact at the cap is skipped by the broadcast (and the log says so); a broadcast
    counts toward the cap of later sequence steps."""
    two_days_before = SEND - timedelta(days=2)
    _setup(
        engine,
        _workspace(CAPPED),
        [
            _sub(APPLIED, "busy@x.test"),
            _sub(APPLIED, "free@x.test"),
            (two_days_before, {"type": "tag.assigned", "contact": "busy@x.test", "tag": "vip"}),
        ],
    )
    run_once(engine, WS_ID, VirtualClock(two_days_before))  # the sequence email to busy@
    assert [m.recipient for m in _messages(engine)] == ["busy@x.test"]
    assert _send(engine, SEND) == 1
    assert _recipients(engine) == ["free@x.test"]
    skipped = _log(engine, "broadcast.skipped")
    assert skipped == [
        (
            SEND,
            {
                "kind": "broadcast.skipped",
                "contact": "busy@x.test",
                "broadcast": "bf",
                "reason": "frequency_cap",
            },
        )
    ]
    with transaction(engine) as session:
        run = session.scalars(select(BroadcastRun)).one()
        assert (run.queued, run.skipped) == (1, 1)
    # The broadcast counts: a sequence email to free@ an hour later waits (queued, frequency_cap).
    later = SEND + timedelta(hours=1)
    _ingest(engine, [(later, {"type": "tag.assigned", "contact": "free@x.test", "tag": "vip"})])
    run_once(engine, WS_ID, VirtualClock(later))
    with transaction(engine) as session:
        free = session.scalars(select(Contact).where(Contact.email == "free@x.test")).one()
        enrollment = session.scalars(select(Enrollment).where(Enrollment.contact_id == free.id)).one()
        assert (enrollment.status, enrollment.reason) == ("queued", "frequency_cap")
        assert enrollment.due_at == SEND + timedelta(days=7)


def test_b1_a_contact_whose_template_cannot_be_built_is_skipped_and_logged(engine: Engine) -> None:
    """S11 for broadcasts: a missing variable skips that contact (logged), the others get it."""
    broadcasts = """\
broadcasts:
  - id: hi
    send_at: "2026-11-27 09:00"
    audience: {on_list: news}
    template: named
"""
    _setup(
        engine,
        _workspace(broadcasts),
        [_sub(APPLIED, "ann@x.test", first_name="Ann"), _sub(APPLIED, "x@x.test")],
    )
    assert _send(engine, SEND) == 1
    assert _recipients(engine, "hi") == ["ann@x.test"]
    assert [record for _, record in _log(engine, "broadcast.skipped")] == [
        {
            "kind": "broadcast.skipped",
            "contact": "x@x.test",
            "broadcast": "hi",
            "reason": "template_variable:contact.first_name",
        }
    ]


def test_b1_bulk_audience_of_5000_contacts(engine: Engine) -> None:
    """B1 in bulk: 5,000 contacts are selected and queued with a bounded number of SELECTs (one
    per table per batch, never one per contact), fast enough to run in the suite."""
    total = 5000
    _setup(engine, _workspace(ONE_BROADCAST), [])
    # Contacts are written in bulk (ingesting 5,000 events is not what this test measures).
    with transaction(engine) as session:
        session.execute(
            insert(Contact),
            [
                {
                    "workspace_id": WS_ID,
                    "email": f"c{n:05d}@x.test",
                    "first_name": f"C{n}",
                    "fields": {},
                    "lead_status": "blacklisted" if n % 100 == 0 else "active",
                    "created_at": APPLIED,
                    "updated_at": APPLIED,
                }
                for n in range(total)
            ],
        )
        ids = list(session.scalars(select(Contact.id).order_by(Contact.id)))
        session.execute(
            insert(ContactList),
            [
                {"workspace_id": WS_ID, "contact_id": cid, "list": "news", "subscribed_at": APPLIED}
                for n, cid in enumerate(ids)
                if n % 10 != 9  # one in ten is not on the list
            ],
        )
    selects: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    started = time.perf_counter()
    try:
        queued = _send(engine, SEND)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    elapsed = time.perf_counter() - started
    expected = sum(1 for n in range(total) if n % 10 != 9 and n % 100 != 0)
    assert queued == expected
    assert len(_recipients(engine)) == expected
    batches = -(-total // BATCH_SIZE)
    assert len(selects) <= 20 * batches + 10, f"{len(selects)} SELECTs for {total} contacts"
    assert elapsed < 60, f"{elapsed:.1f}s for {total} contacts"
    print(f"broadcast to {total} contacts: {elapsed:.2f}s, {len(selects)} SELECTs")
