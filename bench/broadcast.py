"""`python -m bench broadcast`: audience selection and queueing of one broadcast to N contacts,
seconds (issues 4 and 7; target: 1,000,000 contacts in under 60 s).

N contacts are created in bulk on a file SQLite database (all on the ``newsletter`` list; every
tenth tagged ``vip``, every twentieth unsubscribed from the list, every fiftieth unsubscribed from
everything, every hundredth blacklisted), with a workspace holding one broadcast to
``{all: [{on_list: newsletter}, {not: {has_tag: vip}}]}``. Then
:func:`dripflow.engine.broadcasts.send_due_broadcasts` runs once, in one transaction, at the send
time under a virtual clock, as the worker would, and the time of that call (commit included) is
the figure. The number of messages queued must equal the audience computed here.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from bench.report import finish, say
from dripflow.core.clock import VirtualClock
from dripflow.core.validate import load_workspace_text
from dripflow.engine.broadcasts import send_due_broadcasts
from dripflow.engine.context import Ctx, load_rules
from dripflow.store.contacts import ContactData, ContactRepo
from dripflow.store.database import make_engine, transaction
from dripflow.store.migrate import upgrade
from dripflow.store.tables import Contact, ContactList, ContactTag, Message
from dripflow.store.workspaces import apply_workspace

WS_ID = "bench"
APPLIED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SEND = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)  # 2026-11-27 09:00 in New York (EST, UTC-5)
TARGET_SECONDS = 60
SETUP_BATCH = 50_000

WORKSPACE = """\
workspace: {id: bench, name: Bench, timezone: America/New_York, default_send_time: "10:00",
            physical_address: "1 Main St, Springfield", base_url: "https://mail.bench.test"}
mailboxes:
  - {id: news, from: "News <news@bench.test>", default: true}
lists: [newsletter]
tags: [vip]
templates:
  bf: {subject: "Black Friday, {{ contact.first_name | default('friend') }}",
       text: "Deals inside, {{ contact.first_name }}. Leave: {{ unsubscribe_url }}"}
broadcasts:
  - id: bf
    send_at: "2026-11-27 09:00"
    audience: {all: [{on_list: newsletter}, {not: {has_tag: vip}}]}
    template: bf
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")


def _vip(n: int) -> bool:
    return n % 10 == 3


def _left_list(n: int) -> bool:
    return n % 20 == 7


def _left_all(n: int) -> bool:
    return n % 50 == 13


def _blacklisted(n: int) -> bool:
    return n % 100 == 11


def expected_audience(contacts: int) -> int:
    return sum(
        1 for n in range(contacts) if not (_vip(n) or _left_list(n) or _left_all(n) or _blacklisted(n))
    )


def _email(n: int) -> str:
    return f"c{n}@bench.test"


def create_contacts(session: Session, contacts: int) -> None:
    """The contacts and their list, tag and suppression state, in bulk (setup, not measured)."""
    repo = ContactRepo(session, WS_ID)
    for start in range(0, contacts, SETUP_BATCH):
        numbers = range(start, min(start + SETUP_BATCH, contacts))
        repo.upsert_many([ContactData(email=_email(n), first_name=f"C{n}") for n in numbers], at=APPLIED)
        emails = [_email(n) for n in numbers]
        repo.subscribe_many(emails, "newsletter", at=APPLIED)
        ids = repo.ids_by_email(emails)

        def chosen(
            test: Callable[[int], bool], numbers: range = numbers, ids: dict[str, int] = ids
        ) -> list[int]:
            return [ids[_email(n)] for n in numbers if test(n)]

        vips = chosen(_vip)
        if vips:
            session.execute(
                insert(ContactTag),
                [
                    {"workspace_id": WS_ID, "contact_id": i, "tag": "vip", "assigned_at": APPLIED}
                    for i in vips
                ],
            )
        for test, stmt, column in (
            (
                _left_list,
                update(ContactList).values(unsubscribed_at=APPLIED).where(ContactList.list == "newsletter"),
                ContactList.contact_id,
            ),
            (_left_all, update(Contact).values(unsubscribed_at=APPLIED), Contact.id),
            (_blacklisted, update(Contact).values(lead_status="blacklisted"), Contact.id),
        ):
            picked = chosen(test)
            for at in range(0, len(picked), 500):
                session.execute(
                    stmt.where(column.in_(picked[at : at + 500])).execution_options(synchronize_session=False)
                )


def run(args: argparse.Namespace) -> None:
    contacts = 2_000 if args.quick else args.contacts
    expected = expected_audience(contacts)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        engine = make_engine(url)
        started = time.perf_counter()
        with transaction(engine) as session:
            apply_workspace(session, load_workspace_text(WORKSPACE, "bench.yaml"), now=APPLIED, actor="bench")
            create_contacts(session, contacts)
        say(
            f"{contacts} contacts created in {time.perf_counter() - started:.2f}s; "
            f"audience should be {expected}"
        )
        started = time.perf_counter()
        with transaction(engine) as session:
            ctx = Ctx(session, WS_ID, load_rules(session, WS_ID), VirtualClock(SEND))
            queued = send_due_broadcasts(ctx)
        seconds = time.perf_counter() - started
        with transaction(engine) as session:
            stored = session.scalar(
                select(func.count()).select_from(Message).where(Message.broadcast_id == "bf")
            )
        engine.dispose()
    if queued != expected or stored != expected:
        raise SystemExit(f"wrong outcome: {queued} queued, {stored} stored, {expected} expected")
    say(
        f"broadcast to {contacts} contacts: {queued} messages queued in {seconds:.2f}s "
        f"({contacts / seconds:.0f} contacts/s, {queued / seconds:.0f} messages/s; target {TARGET_SECONDS}s "
        f"for 1,000,000)"
    )
    finish(
        "broadcast",
        {
            "contacts": contacts,
            "queued": queued,
            "seconds": round(seconds, 3),
            "contacts_per_s": round(contacts / seconds, 1),
            "messages_per_s": round(queued / seconds, 1),
            "projected_seconds_1m": round(seconds * 1_000_000 / contacts, 1),
            "target_seconds": TARGET_SECONDS,
        },
    )
