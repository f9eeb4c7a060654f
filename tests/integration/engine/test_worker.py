"""The worker (SPEC §10) and the scheduler's claims (D3) on SQLite and PostgreSQL.

Two workers run at once on one database, on a clock where every enrollment is due: each step
occurrence must run exactly once and produce exactly one message.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from dripflow.core.clock import VirtualClock
from dripflow.core.errors import UserError
from dripflow.core.validate import load_workspace_text
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.engine.worker import run_worker
from dripflow.store.database import transaction
from dripflow.store.tables import Contact, Enrollment, Message, StepRun
from dripflow.store.workspaces import apply_workspace

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
WORKSPACE = """\
workspace: {id: shop, name: Shop, timezone: UTC, default_send_time: "10:00", physical_address: "1 Main St"}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
lists: [news]
templates:
  hello: {subject: "Hello", text: "Hi"}
sequences:
  - id: drip
    start_when: [{event: list.subscribed, list: news}]
    steps:
      - {id: one, type: email, template: hello}
      - {id: two, type: email, template: hello, after: {hours: 2}}
      - {id: three, type: email, template: hello, after: {days: 1}}
"""


def _setup(engine: Engine, contacts: int) -> None:
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(WORKSPACE, "shop.yaml"), now=START, actor="test")
    events = [
        InputEvent(
            n, START, {"type": "list.subscribed", "contact": f"c{n}@x.test", "list": "news", "id": f"e{n}"}
        )
        for n in range(1, contacts + 1)
    ]
    report = ingest_events(engine, "shop", events, Path("events.jsonl"))
    assert report.applied == contacts


def _count(engine: Engine, table: type[StepRun] | type[Message]) -> int:
    with transaction(engine) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_worker_until_idle_runs_what_is_due_and_stops(engine: Engine) -> None:
    """`--until-idle` runs every step due now, then exits; later steps wait for their time (T3/T4)."""
    _setup(engine, 5)
    stats = run_worker(engine, VirtualClock(START), until_idle=True)
    assert stats.claimed == 5
    assert _count(engine, Message) == 5
    # Two hours later the second step is due for all five; the third not before tomorrow 10:00.
    stats = run_worker(engine, VirtualClock(START + timedelta(hours=2)), until_idle=True)
    assert stats.claimed == 5
    assert _count(engine, Message) == 10
    stats = run_worker(engine, VirtualClock(START + timedelta(hours=20)), until_idle=True)
    assert stats.claimed == 0
    stats = run_worker(engine, VirtualClock(START + timedelta(days=1, hours=1)), until_idle=True)
    assert (stats.claimed, _count(engine, Message)) == (5, 15)
    with transaction(engine) as session:
        assert set(session.scalars(select(Enrollment.status))) == {"finished"}


@pytest.mark.parametrize("workers", [2])
def test_concurrent_workers_run_each_step_occurrence_exactly_once(engine: Engine, workers: int) -> None:
    """D3 and §10: workers sharing a database never take the same enrollment (SKIP LOCKED on
    PostgreSQL, serialised writers on SQLite); every occurrence runs once, one message each."""
    contacts = 400
    _setup(engine, contacts)
    errors: list[BaseException] = []
    stats = []

    def work(clock: VirtualClock) -> None:
        try:
            stats.append(run_worker(engine, clock, until_idle=True))
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    # Step one now, step two two hours later, step three on Tuesday at 10:00 (T3/T4).
    for moment in (START, START + timedelta(hours=2), START + timedelta(days=1, hours=1)):
        threads = [threading.Thread(target=work, args=(VirtualClock(moment),)) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert not errors, errors
    assert _count(engine, StepRun) == 3 * contacts
    assert _count(engine, Message) == 3 * contacts
    with transaction(engine) as session:
        per_contact = session.execute(
            select(Message.contact_id, func.count()).group_by(Message.contact_id)
        ).all()
        assert {count for _contact, count in per_contact} == {3}
        assert len(per_contact) == contacts
        assert set(session.scalars(select(Enrollment.status))) == {"finished"}
    assert sum(item.claimed for item in stats) == 3 * contacts


def test_ingest_refuses_the_whole_file_when_one_event_is_bad(engine: Engine) -> None:
    """Nothing is half-applied: one unknown list among good events applies none of them."""
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(WORKSPACE, "shop.yaml"), now=START, actor="test")
    events = [
        InputEvent(1, START, {"type": "list.subscribed", "contact": "a@x.test", "list": "news"}),
        InputEvent(2, START, {"type": "list.subscribed", "contact": "b@x.test", "list": "nwes"}),
        InputEvent(3, START, {"type": "tag.assigned", "contact": "c@x.test", "tag": "vip"}),
    ]
    with pytest.raises(UserError) as refused:
        ingest_events(engine, "shop", events, Path("in.jsonl"))
    message = str(refused.value)
    assert "in.jsonl:2: unknown list 'nwes' — did you mean 'news'?" in message
    assert "in.jsonl:3: unknown tag 'vip'" in message
    assert "nothing was applied" in message
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 0
        assert session.scalar(select(func.count()).select_from(Enrollment)) == 0
