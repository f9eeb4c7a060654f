"""Scale-out safety (SPEC §10, issue 6): three `dripflow worker` processes on one PostgreSQL database.

10,000 enrollments are due at once. Three real worker processes (the installed console script,
each with its own connection pool) share them through ``FOR UPDATE SKIP LOCKED`` claims. While
one of them is inside a batch transaction (it holds claimed rows, uncommitted), it is killed with
SIGKILL: no graceful shutdown, no rollback from the client. PostgreSQL rolls that transaction back
when the connection drops, the rows it had claimed become due again, and the two survivors take
them. At the end every step occurrence has run exactly once and produced exactly one message.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, Select, func, select, text
from sqlalchemy.engine import make_url

from dripflow.core.validate import load_workspace_text
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.store.database import transaction
from dripflow.store.tables import Contact, ContactList, Enrollment, Message, StepRun
from dripflow.store.workspaces import apply_workspace

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),  # SKIP LOCKED is PostgreSQL's
]

ENROLLMENTS = 10_000
STEPS = ("one", "two")
WORKERS = 3
# Due at once: every event happened a few minutes ago, so every first step is due now and the
# second (no delay: "after 0" chains fire together) right after it.
AT = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
WORKSPACE = """\
workspace: {id: shop, name: Shop, timezone: UTC, default_send_time: "10:00", physical_address: "1 Main St"}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
lists: [news]
templates:
  hello: {subject: "Hello", text: "Hi {{ contact.email }}"}
sequences:
  - id: drip
    start_when: [{event: list.subscribed, list: news}]
    steps:
      - {id: one, type: email, template: hello}
      - {id: two, type: email, template: hello}
"""
DRIPFLOW = Path(sys.executable).with_name("dripflow")
SETUP_BUDGET = 30.0  # seconds; a few on a 2-core machine
RUN_BUDGET = 120.0


def _setup(engine: Engine) -> None:
    """The workspace, then 10,000 contacts subscribed to ``news`` and enrolled, all due now.

    The first contact goes through the real path (an ingested ``list.subscribed`` event); the
    other 9,999 are copies of the rows the engine wrote for it (contact, list membership,
    enrollment), made in three ``INSERT ... SELECT`` statements. Ingesting 10,000 events one by
    one takes minutes (each runs the trigger engine in its own savepoint), and what this test is
    about is the workers, not ingestion.
    """
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(WORKSPACE, "shop.yaml"), now=AT, actor="test")
    event = {"type": "list.subscribed", "contact": "c1@x.test", "list": "news", "id": "e1"}
    assert ingest_events(engine, "shop", [InputEvent(1, AT, event)], Path("events.jsonl")).applied == 1
    with transaction(engine) as session:
        first = session.scalars(select(Enrollment)).one()
        template = {"tid": first.contact_id, "n": ENROLLMENTS}
        contacts = _columns(Contact, "id", "email")
        session.execute(
            text(
                f"INSERT INTO contacts (email, {contacts}) "
                f"SELECT 'c' || g || '@x.test', {_prefixed(contacts)} "
                "FROM contacts t, generate_series(2, :n) g WHERE t.id = :tid"
            ),
            template,
        )
        for model, skip in ((ContactList, ("contact_id",)), (Enrollment, ("id", "contact_id"))):
            columns = _columns(model, *skip)
            session.execute(
                text(
                    f"INSERT INTO {model.__tablename__} (contact_id, {columns}) "
                    f"SELECT c.id, {_prefixed(columns)} FROM {model.__tablename__} t "
                    "JOIN contacts c ON c.workspace_id = t.workspace_id AND c.id <> t.contact_id "
                    "WHERE t.contact_id = :tid"
                ),
                template,
            )
    counts = [_scalar(engine, select(func.count()).select_from(model)) for model in (Contact, Enrollment)]
    assert counts == [ENROLLMENTS, ENROLLMENTS]


def _columns(model: type[Contact] | type[ContactList] | type[Enrollment], *skip: str) -> str:
    return ", ".join(f'"{column.name}"' for column in model.__table__.columns if column.name not in skip)


def _prefixed(columns: str) -> str:
    return ", ".join(f"t.{column}" for column in columns.split(", "))


def _scalar(engine: Engine, stmt: Select[int]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar() or 0)


def _step_runs(engine: Engine) -> int:
    return _scalar(engine, select(func.count()).select_from(StepRun))


def _open_batch(engine: Engine, name: str) -> int | None:
    """The transaction id of worker ``name``'s open transaction if it has one, i.e. if it has
    locked or written rows (``FOR UPDATE`` assigns an id): it holds a claimed, uncommitted batch."""
    query = text(
        "SELECT backend_xid::text::bigint FROM pg_stat_activity "
        "WHERE application_name = :name AND backend_xid IS NOT NULL"
    )
    with engine.connect() as conn:
        return conn.execute(query, {"name": name}).scalar()


def _transaction_status(engine: Engine, xid: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT txid_status(:xid)"), {"xid": xid}).scalar())


@pytest.fixture
def env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DRIPFLOW_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env  # no DRIPFLOW_SMTP_URL: messages are captured, nothing leaves the machine


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:  # only on failure are any still running
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_three_workers_one_killed_every_step_runs_exactly_once(
    engine: Engine, db_url: str, env: dict[str, str], workers: list[subprocess.Popen[str]]
) -> None:
    began = time.monotonic()
    _setup(engine)
    setup_took = time.monotonic() - began
    print(f"setup: {ENROLLMENTS} enrollments in {setup_took:.1f}s")
    assert setup_took < SETUP_BUDGET
    total = ENROLLMENTS * len(STEPS)
    assert _step_runs(engine) == 0
    due = select(func.count()).select_from(Enrollment).where(Enrollment.due_at <= datetime.now(UTC))
    assert _scalar(engine, due) == ENROLLMENTS

    url = make_url(db_url)
    names = [f"dripflow-worker-{n}" for n in range(WORKERS)]
    for name in names:
        worker_url = url.update_query_dict({"application_name": name}).render_as_string(hide_password=False)
        workers.append(
            subprocess.Popen(
                [str(DRIPFLOW), "worker", "--until-idle", "--poll", "0.2", "--database", worker_url],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    started = time.monotonic()
    victim = workers[0]

    # Part-way: some steps have committed, most have not, and the victim holds a claimed batch.
    # It is frozen (SIGSTOP) before the check that it still holds it, so that it cannot commit
    # between the check and the kill.
    deadline = started + RUN_BUDGET
    while True:
        assert time.monotonic() < deadline, "the workers made no progress"
        assert victim.poll() is None, victim.communicate()
        xid = _open_batch(engine, names[0]) if _step_runs(engine) >= total // 10 else None
        if xid is not None:
            victim.send_signal(signal.SIGSTOP)
            time.sleep(0.1)
            if _open_batch(engine, names[0]) == xid and _transaction_status(engine, xid) == "in progress":
                break
            victim.send_signal(signal.SIGCONT)
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    at_kill = _step_runs(engine)
    print(f"killed {names[0]} with {at_kill}/{total} steps committed, {time.monotonic() - started:.1f}s in")
    assert victim.returncode == -signal.SIGKILL
    assert 0 < at_kill < total, "the kill came too late to be part-way"
    # The batch it held was rolled back by PostgreSQL when its connection dropped.
    deadline_abort = time.monotonic() + 10
    while _transaction_status(engine, xid) == "in progress":
        assert time.monotonic() < deadline_abort
        time.sleep(0.05)
    assert _transaction_status(engine, xid) == "aborted"

    survivors_claimed = 0
    for proc in workers[1:]:
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert proc.returncode == 0, err
        match = re.search(r"ran (\d+) due enrollment", out)
        assert match, out
        survivors_claimed += int(match.group(1))
    print(f"workers done {time.monotonic() - started:.1f}s after start; survivors ran {survivors_claimed}")
    # Each enrollment was claimed in exactly one committed batch: the survivors' plus what the
    # victim committed before it died (its lost batch counts nowhere; the survivors redid it).
    victim_committed = ENROLLMENTS - survivors_claimed
    assert 0 <= victim_committed <= at_kill // len(STEPS)

    with transaction(engine) as session:
        # Every step of every enrollment ran exactly once.
        assert session.scalar(select(func.count()).select_from(StepRun)) == total
        per_step = dict(
            session.execute(
                select(StepRun.step_id, func.count(func.distinct(StepRun.enrollment_id))).group_by(
                    StepRun.step_id
                )
            ).all()
        )
        assert per_step == dict.fromkeys(STEPS, ENROLLMENTS)
        per_enrollment = session.execute(
            select(func.count()).select_from(
                select(StepRun.enrollment_id)
                .group_by(StepRun.enrollment_id)
                .having(func.count() != len(STEPS))
                .subquery()
            )
        ).scalar()
        assert per_enrollment == 0
        assert set(session.scalars(select(StepRun.outcome).distinct())) == {"executed"}
        # One message per step occurrence, each key once, all kept in the capture outbox.
        assert session.scalar(select(func.count()).select_from(Message)) == total
        assert session.scalar(select(func.count(func.distinct(Message.key)))) == total
        assert (
            session.scalar(
                select(func.count(func.distinct(func.concat(Message.enrollment_id, ":", Message.step_id))))
            )
            == total
        )
        assert set(session.scalars(select(Message.status).distinct())) == {"captured"}
        # Every enrollment finished, each having run both steps.
        statuses = dict(
            session.execute(select(Enrollment.status, func.count()).group_by(Enrollment.status)).all()
        )
        assert statuses == {"finished": ENROLLMENTS}
        assert set(session.scalars(select(Enrollment.runs).distinct())) == {len(STEPS)}
        assert session.scalar(select(func.count()).where(Enrollment.due_at.is_not(None))) == 0
