"""`python -m bench sequence`: N contacts through a 5-step email sequence on the real scheduler,
against a floor doing the same database and rendering work with raw `sqlite3` and Jinja2 (issue 7).

Engine: a fresh workspace on a file SQLite database (or `--database-url`), N contacts created and
subscribed in bulk, enrolled in one sequence of five email steps one hour apart, then driven by
`scheduler.run_once` under a virtual clock that jumps to the next due time (`due_in`), as
`dripflow simulate` does, until nothing is due. Every contact must end with exactly five messages.

Enrollment: the first contacts are enrolled through the engine's own `enroll`; the rest get the
very rows (and journal records) those wrote, inserted in bulk, so that setup does not dominate
the run. The copy is checked against the engine's rows before it is made.

Floor: the least program doing the same work on its own SQLite file: claim 500 due enrollments
by due time, render subject and body in Jinja2's immutable sandbox, insert the messages, advance
the enrollments, commit; the same virtual-time jumps. `ratio` = engine rate / floor rate (the
target is at least 0.5). With `--database-url` the engine runs there; the floor stays on SQLite.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sqlite3
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy import Engine, func, insert, select

from bench.report import finish, peak_rss_mb, say
from dripflow.core.clock import VirtualClock
from dripflow.core.validate import load_workspace_text
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.enrollments import enroll
from dripflow.engine.scheduler import BATCH_SIZE, due_in, run_once
from dripflow.store.contacts import ContactData, ContactRepo
from dripflow.store.database import make_engine, transaction
from dripflow.store.migrate import upgrade
from dripflow.store.tables import Contact, Enrollment, JournalEntry, Message
from dripflow.store.views import load_views
from dripflow.store.workspaces import apply_workspace

STEPS = 5
DELAY = timedelta(hours=1)
SEQUENCE = "drip"
LIST = "newsletter"
SUBJECT = "A note for {{ contact.first_name }}"
BODY = (
    "Hi {{ contact.first_name }},\n\n"
    "Here is one more short note in our series. Reply to this email if you have a question.\n\n"
    "— The Bench team\n"
)
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
# Contacts enrolled through the engine's `enroll`; the rest copy their rows (see the docstring).
ENGINE_ENROLLED = 100
CHUNK = 10_000  # contacts (and enrollment rows) written per setup transaction


def _workspace_yaml(workspace_id: str) -> str:
    steps = "\n".join(
        f"      - {{id: s{n}, type: email, template: note, after: {{hours: 1}}}}" for n in range(1, STEPS + 1)
    )
    return f"""\
workspace: {{id: {workspace_id}, name: Bench, timezone: UTC, physical_address: "1 Main St, Springfield"}}
mailboxes:
  - {{id: news, from: "News <news@bench.test>", default: true}}
lists: [{LIST}]
templates:
  note: {{subject: {json.dumps(SUBJECT)}, text: {json.dumps(BODY)}}}
sequences:
  - id: {SEQUENCE}
    steps:
{steps}
"""


class _BenchClock(VirtualClock):
    virtual = True  # as `dripflow simulate`'s clock: messages are captured, never queued for SMTP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=100_000, help="contacts enrolled (default 100,000)")
    parser.add_argument(
        "--database-url", default=None, help="the engine's database (default: a temporary SQLite file)"
    )
    parser.add_argument("--no-floor", action="store_true", help="run the engine only")
    parser.add_argument("--profile", default=None, help="write a cProfile (pstats) of the engine's run here")


def run(args: argparse.Namespace) -> None:
    contacts = 1_000 if args.quick else args.contacts
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/engine.db"
        # A shared server keeps earlier runs: each run gets a workspace of its own.
        workspace_id = "bench" if args.database_url is None else f"bench{os.getpid()}x{int(time.time())}"
        say(f"engine: {contacts} contacts, {STEPS} email steps, on {url}")
        engine_figures = run_engine(url, workspace_id, contacts, args.profile)
        engine_rss = peak_rss_mb()
        floor_figures: dict[str, Any] = {}
        if not args.no_floor:
            say(f"floor: raw sqlite3 + Jinja2 on {tmp}/floor.db")
            floor_figures = run_floor(f"{tmp}/floor.db", contacts)
    figures: dict[str, Any] = {
        "contacts": contacts,
        "steps": engine_figures["steps"],
        "database": url.split(":", 1)[0] if args.database_url else "sqlite",
        "setup_s": engine_figures["setup_s"],
        "seconds": engine_figures["seconds"],
        "cpu_s": engine_figures["cpu_s"],
        "steps_per_s": engine_figures["steps_per_s"],
        "engine_peak_rss_mb": engine_rss,
    }
    if floor_figures:
        figures.update(
            floor_setup_s=floor_figures["setup_s"],
            floor_seconds=floor_figures["seconds"],
            floor_steps_per_s=floor_figures["steps_per_s"],
            floor_database="sqlite",
            ratio=round(engine_figures["steps_per_s"] / floor_figures["steps_per_s"], 3),
            target_ratio=0.5,
        )
        say(
            f"engine {figures['steps_per_s']:.0f} steps/s, floor {figures['floor_steps_per_s']:.0f} steps/s: "
            f"ratio {figures['ratio']:.2f} (target >= 0.5)"
        )
    finish("sequence", figures)


# -- the engine ---------------------------------------------------------------------------------


def run_engine(url: str, workspace_id: str, contacts: int, profile: str | None) -> dict[str, Any]:
    upgrade(url)
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        _setup_engine(engine, workspace_id, contacts)
        setup_s = time.perf_counter() - started
        say(f"  setup: {contacts} contacts created, subscribed and enrolled in {setup_s:.2f}s")

        profiler = cProfile.Profile() if profile else None
        clock = _BenchClock(START)
        claimed = 0
        started, cpu_started = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        while True:
            with transaction(engine) as session:
                due = due_in(session, workspace_id)
            if due is None:
                break
            clock.set(max(due, clock.now()))
            moment_started, before = time.perf_counter(), claimed
            while claimed_now := run_once(engine, workspace_id, clock):
                claimed += claimed_now
            say(
                f"  {clock.now():%Y-%m-%d %H:%M}Z: {claimed - before} steps "
                f"in {time.perf_counter() - moment_started:.2f}s"
            )
        seconds = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
            say(f"  profile written to {profile}")

        steps = _check_engine(engine, workspace_id, contacts)
        say(
            f"  {steps} steps in {seconds:.2f}s ({cpu_s:.2f}s CPU): {steps / seconds:.0f} steps/s "
            f"(claimed {claimed})"
        )
        return {
            "setup_s": round(setup_s, 3),
            "seconds": round(seconds, 3),
            "cpu_s": round(cpu_s, 3),
            "steps": steps,
            "steps_per_s": round(steps / seconds, 1),
        }
    finally:
        engine.dispose()


def _setup_engine(engine: Engine, workspace_id: str, contacts: int) -> None:
    with transaction(engine) as session:
        apply_workspace(
            session,
            load_workspace_text(_workspace_yaml(workspace_id), "bench.yaml"),
            now=START,
            actor="bench",
        )
    # Contacts in bulk, each on the list (which makes them active, as a real signup would).
    for first in range(0, contacts, CHUNK):
        numbers = range(first, min(first + CHUNK, contacts))
        with transaction(engine) as session:
            repo = ContactRepo(session, workspace_id)
            repo.upsert_many(
                [ContactData(email=f"c{n}@bench.test", first_name=f"C{n}") for n in numbers], at=START
            )
            repo.subscribe_many([f"c{n}@bench.test" for n in numbers], LIST, at=START)
    # The first contacts through the engine's own `enroll`.
    clock = _BenchClock(START)
    with transaction(engine) as session:
        ids = list(
            session.scalars(
                select(Contact.id).where(Contact.workspace_id == workspace_id).order_by(Contact.id)
            )
        )
        sample = ids[: min(ENGINE_ENROLLED, len(ids))]
        ctx = Ctx(session, workspace_id, load_rules(session, workspace_id), clock)
        views = load_views(session, workspace_id, sample)
        for contact_id in sample:
            if enroll(ctx, views[contact_id], SEQUENCE, by="admin") is None:
                raise SystemExit(f"the engine refused to enroll contact {contact_id}")
        ctx.flush_journal()
    rest = ids[len(sample) :]
    if not rest:
        return
    # The rest: exactly the rows those wrote, with another contact in them.
    row_template, journal_template = _enrollment_template(engine, workspace_id, sample)
    emails = _emails(engine, workspace_id)
    for first in range(0, len(rest), CHUNK):
        chunk = rest[first : first + CHUNK]
        with transaction(engine) as session:
            session.execute(insert(Enrollment), [{**row_template, "contact_id": cid} for cid in chunk])
            journal = []
            for cid in chunk:
                for record in journal_template:
                    journal.append(
                        {**record, "contact_id": cid, "data": {**record["data"], "contact": emails[cid]}}
                    )
            session.execute(insert(JournalEntry), journal)


_VARYING = {"id", "contact_id"}


def _enrollment_template(
    engine: Engine, workspace_id: str, sample: list[int]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The one enrollment row and journal records `enroll` wrote for each sampled contact, checked
    to be the same for all of them but for the contact."""
    columns = [column for column in Enrollment.__table__.c if column.name not in _VARYING]
    with transaction(engine) as session:
        rows = session.execute(
            select(Enrollment.contact_id, *columns).where(Enrollment.workspace_id == workspace_id)
        ).all()
        journal_rows = session.execute(
            select(JournalEntry.contact_id, JournalEntry.at, JournalEntry.kind, JournalEntry.data)
            .where(JournalEntry.workspace_id == workspace_id, JournalEntry.contact_id.in_(sample))
            .order_by(JournalEntry.id)
        ).all()
    emails = _emails(engine, workspace_id, sample)
    shapes: set[tuple[Any, ...]] = set()
    templates: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        values = {column.name: getattr(row, column.name) for column in columns}
        key = tuple(sorted(values.items()))
        shapes.add(key)
        templates[key] = values
    journal: dict[int, list[dict[str, Any]]] = {cid: [] for cid in sample}
    for cid, at, kind, data in journal_rows:
        record = {"workspace_id": workspace_id, "at": at, "kind": kind, "data": dict(data)}
        if record["data"].get("contact") != emails[cid]:
            raise SystemExit(f"unexpected journal record for contact {cid}: {data}")
        record["data"]["contact"] = None
        journal[cid].append(record)
    journal_shapes = {repr(records) for records in journal.values()}
    if len(rows) != len(sample) or len(shapes) != 1 or len(journal_shapes) != 1:
        raise SystemExit(
            f"engine enrollments differ between contacts ({len(rows)} rows, {len(shapes)} shapes, "
            f"{len(journal_shapes)} journal shapes): cannot copy them"
        )
    row_template = templates[shapes.pop()]
    if (
        row_template["status"] != "active"
        or row_template["open_key"] != SEQUENCE
        or row_template["next_step"] != "s1"
        or row_template["due_at"] != START + DELAY
    ):
        raise SystemExit(f"unexpected enrollment written by the engine: {row_template}")
    return row_template, journal[sample[0]]


def _emails(engine: Engine, workspace_id: str, ids: list[int] | None = None) -> dict[int, str]:
    stmt = select(Contact.id, Contact.email).where(Contact.workspace_id == workspace_id)
    if ids is not None:
        stmt = stmt.where(Contact.id.in_(ids))
    with transaction(engine) as session:
        return {cid: email for cid, email in session.execute(stmt)}


def _check_engine(engine: Engine, workspace_id: str, contacts: int) -> int:
    """Every contact got exactly five messages and every enrollment finished; returns the messages."""
    with transaction(engine) as session:
        per_contact = Counter(
            dict(
                session.execute(
                    select(Message.contact_id, func.count())
                    .where(Message.workspace_id == workspace_id)
                    .group_by(Message.contact_id)
                ).all()
            )
        )
        statuses = dict(
            session.execute(
                select(Enrollment.status, func.count())
                .where(Enrollment.workspace_id == workspace_id)
                .group_by(Enrollment.status)
            ).all()
        )
        sample = session.execute(
            select(Message.subject, Message.body_text, Contact.first_name)
            .join(Contact, Contact.id == Message.contact_id)
            .where(Message.workspace_id == workspace_id)
            .limit(1)
        ).one()
    sandbox = ImmutableSandboxedEnvironment(keep_trailing_newline=True)
    contact = {"first_name": sample.first_name}
    expected = (
        sandbox.from_string(SUBJECT).render(contact=contact),
        sandbox.from_string(BODY).render(contact=contact),
    )
    if (sample.subject, sample.body_text) != expected:
        raise SystemExit(f"the engine rendered {sample[:2]!r}, the floor renders {expected!r}")
    counts = Counter(per_contact.values())
    if len(per_contact) != contacts or set(counts) != {STEPS} or statuses != {"finished": contacts}:
        raise SystemExit(
            f"wrong outcome: {len(per_contact)} of {contacts} contacts got mail, messages per contact "
            f"{dict(counts)}, enrollments {statuses}"
        )
    return sum(per_contact.values())


# -- the floor ----------------------------------------------------------------------------------

_FLOOR_SCHEMA = """
CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, first_name TEXT);
CREATE TABLE enrollments (
    id INTEGER PRIMARY KEY, contact_id INTEGER NOT NULL, status TEXT NOT NULL,
    step INTEGER NOT NULL, due_at TEXT
);
CREATE INDEX enrollments_status_due_at ON enrollments (status, due_at);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, contact_id INTEGER NOT NULL,
    enrollment_id INTEGER NOT NULL, step INTEGER NOT NULL, recipient TEXT NOT NULL,
    subject TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL
);
"""
_CLAIM = """
SELECT e.id, e.contact_id, e.step, c.email, c.first_name
FROM enrollments e JOIN contacts c ON c.id = e.contact_id
WHERE e.status = 'active' AND e.due_at <= ?
ORDER BY e.due_at, e.id LIMIT ?
"""


def _text(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat(sep=" ")


def run_floor(path: str, contacts: int, batch: int = BATCH_SIZE) -> dict[str, Any]:
    db = sqlite3.connect(path, isolation_level=None)  # we BEGIN and COMMIT ourselves
    try:
        db.execute("PRAGMA journal_mode=WAL")  # the engine's settings (store/database.py)
        db.execute("PRAGMA synchronous=NORMAL")
        started = time.perf_counter()
        db.executescript(_FLOOR_SCHEMA)
        first_due = _text(START + DELAY)
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO contacts (id, email, first_name) VALUES (?, ?, ?)",
            ((n + 1, f"c{n}@bench.test", f"C{n}") for n in range(contacts)),
        )
        db.executemany(
            "INSERT INTO enrollments (contact_id, status, step, due_at) VALUES (?, 'active', 1, ?)",
            ((n + 1, first_due) for n in range(contacts)),
        )
        db.execute("COMMIT")
        setup_s = time.perf_counter() - started
        say(f"  setup: {contacts} contacts and enrollments in {setup_s:.2f}s")

        # The engine's settings (core/render.py): the same sandbox, the same output.
        sandbox = ImmutableSandboxedEnvironment(keep_trailing_newline=True)
        subject_template, body_template = sandbox.from_string(SUBJECT), sandbox.from_string(BODY)
        now = START
        started = time.perf_counter()
        while True:
            (due,) = db.execute("SELECT min(due_at) FROM enrollments WHERE status = 'active'").fetchone()
            if due is None:
                break
            now = max(now, datetime.fromisoformat(due).replace(tzinfo=UTC))
            now_text, next_text = _text(now), _text(now + DELAY)
            while True:
                db.execute("BEGIN IMMEDIATE")
                rows = db.execute(_CLAIM, (now_text, batch)).fetchall()
                if not rows:
                    db.execute("COMMIT")
                    break
                messages, moves = [], []
                for enrollment_id, contact_id, step, email, first_name in rows:
                    contact = {"email": email, "first_name": first_name}
                    messages.append(
                        (
                            f"enrollment:{enrollment_id}:{step}",
                            contact_id,
                            enrollment_id,
                            step,
                            email,
                            subject_template.render(contact=contact),
                            body_template.render(contact=contact),
                            now_text,
                        )
                    )
                    last = step == STEPS
                    moves.append(
                        (
                            step + 1,
                            "finished" if last else "active",
                            None if last else next_text,
                            enrollment_id,
                        )
                    )
                db.executemany(
                    "INSERT INTO messages (key, contact_id, enrollment_id, step, recipient, subject, body,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    messages,
                )
                db.executemany("UPDATE enrollments SET step = ?, status = ?, due_at = ? WHERE id = ?", moves)
                db.execute("COMMIT")
        seconds = time.perf_counter() - started

        counts = Counter(n for (n,) in db.execute("SELECT count(*) FROM messages GROUP BY contact_id"))
        if sum(counts.values()) != contacts or set(counts) != {STEPS}:
            raise SystemExit(f"floor: wrong outcome, messages per contact {dict(counts)}")
        steps = STEPS * contacts
        say(f"  {steps} steps in {seconds:.2f}s: {steps / seconds:.0f} steps/s")
        return {
            "setup_s": round(setup_s, 3),
            "seconds": round(seconds, 3),
            "steps_per_s": round(steps / seconds, 1),
        }
    finally:
        db.close()
