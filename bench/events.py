"""`python -m bench events`: N events against A automations through the real ingestion path, events
per second (issues 4 and 7; target: 1,000,000 events against 1,000 automations at 20,000/s or more).

A workspace with A automations on five kinds of trigger (tag.assigned, list.subscribed,
product.purchased, page.visited, form.submitted) with different filters, a few with an ``if``, and
simple actions (add_tag, give_points, subscribe_list) is applied to a file SQLite database. The
contacts are created beforehand in bulk, then the events go through
:func:`dripflow.engine.ingest_file.ingest_events` in chunks, each chunk one transaction, as
`dripflow events ingest` does with a file. The events are generated chunk by chunk so that memory
stays flat whatever N is. Reports events per second, how many automations fired (from the
journal), and peak RSS.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.report import finish, say
from dripflow.core.validate import load_workspace_text
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.store.contacts import ContactData, ContactRepo
from dripflow.store.database import make_engine, transaction
from dripflow.store.migrate import upgrade
from dripflow.store.tables import Fact, JournalEntry
from dripflow.store.workspaces import apply_workspace

WS_ID = "bench"
APPLIED = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
START = APPLIED + timedelta(hours=1)
TARGET_PER_S = 20_000

# Names in the catalog; an event picks one at random, so about one automation in the workspace
# matches an event (plus what its actions set off), as in a workspace where automations have
# distinct purposes. Keys beyond what the automations name match nothing (`--automations` < 1000).
N_TAGS = 200
N_LISTS = 100
N_PRODUCTS = 200
N_PAGES = 200
N_FORMS = 100
PLANS = ("basic", "pro", "team")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=1_000_000, help="events to ingest")
    parser.add_argument("--automations", type=int, default=1_000)
    parser.add_argument("--contacts", type=int, default=None, help="default: events / 10 (at least 100)")
    parser.add_argument("--chunk", type=int, default=10_000, help="events per ingest call (one transaction)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")


def workspace_yaml(automations: int) -> str:
    """A workspace with ``automations`` automations spread over five trigger kinds and filters.

    Automation ``a{n}`` has kind ``n % 5`` and key ``n // 5``: with 1,000 of them every tag, page
    and product has one automation, every list and form two (the second form one filters on a
    submitted field). A quarter have an ``if``; list and form automations add a tag, which sets
    off that tag's automation in turn (a cascade of depth one).
    """
    lines = [
        'workspace: {id: bench, name: Bench, timezone: America/New_York, default_send_time: "10:00",',
        '            physical_address: "1 Main St, Springfield"}',
        "mailboxes:",
        '  - {id: news, from: "News <news@bench.test>", default: true}',
        f"lists: [{', '.join(f'l{n}' for n in range(N_LISTS))}]",
        f"tags: [customer, engaged, {', '.join(f't{n}' for n in range(N_TAGS))}]",
        "catalog:",
        f"  products: [{', '.join(f'p{n}' for n in range(N_PRODUCTS))}]",
        f"  pages: [{', '.join(f'pg{n}' for n in range(N_PAGES))}]",
        f"  forms: [{', '.join(f'f{n}' for n in range(N_FORMS))}]",
        "automations:",
    ]
    for n in range(automations):
        kind, k = n % 5, n // 5
        tag = f"t{(k * 7) % N_TAGS}"
        if kind == 0:
            when, cond, then = f"{{event: tag.assigned, tag: t{k % N_TAGS}}}", None, "[{give_points: 1}]"
        elif kind == 1:
            when = f"{{event: list.subscribed, list: l{k % N_LISTS}}}"
            cond, then = ("{not: {has_tag: engaged}}" if k % 2 == 0 else None), f"[{{add_tag: {tag}}}]"
        elif kind == 2:
            when = f"{{event: product.purchased, product: p{k % N_PRODUCTS}}}"
            cond = "{not: {has_tag: customer}}" if k % 2 == 0 else None
            then = "[{add_tag: customer}, {give_points: 5}]"
        elif kind == 3:
            when = f"{{event: page.visited, page: pg{k % N_PAGES}}}"
            cond, then = ("{score: {op: gte, value: 3}}" if k % 4 == 0 else None), "[{give_points: 1}]"
        else:
            plan = PLANS[k % len(PLANS)]
            when = (
                f"{{event: form.submitted, form: f{k % N_FORMS}, fields: {{plan: {plan}}}}}"
                if k >= N_FORMS
                else f"{{event: form.submitted, form: f{k % N_FORMS}}}"
            )
            cond, then = None, f"[{{add_tag: {tag}}}, {{give_points: 2}}]"
        lines.append(f"  - id: a{n}")
        lines.append(f"    when: {when}")
        if cond:
            lines.append(f"    if: {cond}")
        lines.append(f"    then: {then}")
    return "\n".join(lines) + "\n"


def event_chunks(total: int, contacts: int, chunk: int, seed: int) -> Iterator[list[InputEvent]]:
    """``total`` events one second apart, in lists of ``chunk``: a mix of the five kinds."""
    rng = random.Random(seed)
    for start in range(0, total, chunk):
        items = []
        for n in range(start, min(start + chunk, total)):
            who = f"c{rng.randrange(contacts)}@bench.test"
            roll = rng.random()
            data: dict[str, Any]
            if roll < 0.35:
                data = {"type": "page.visited", "page": f"pg{rng.randrange(N_PAGES)}"}
            elif roll < 0.55:
                data = {"type": "tag.assigned", "tag": f"t{rng.randrange(N_TAGS)}"}
            elif roll < 0.70:
                data = {"type": "list.subscribed", "list": f"l{rng.randrange(N_LISTS)}"}
            elif roll < 0.85:
                data = {
                    "type": "form.submitted",
                    "form": f"f{rng.randrange(N_FORMS)}",
                    "fields": {"plan": rng.choice(PLANS)},
                }
            else:
                data = {
                    "type": "product.purchased",
                    "product": f"p{rng.randrange(N_PRODUCTS)}",
                    "amount": 49,
                    "id": f"order-{n}",
                }
            items.append(InputEvent(n + 1, START + timedelta(seconds=n), {"contact": who, **data}))
        yield items


def run(args: argparse.Namespace) -> None:
    total = 2_000 if args.quick else args.events
    automations = 50 if args.quick else args.automations
    contacts = args.contacts or max(100, total // 10)
    chunk = min(args.chunk, 1_000) if args.quick else args.chunk
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        engine = make_engine(url)
        started = time.perf_counter()
        with transaction(engine) as session:
            model = load_workspace_text(workspace_yaml(automations), "bench.yaml")
            apply_workspace(session, model, now=APPLIED, actor="bench")
            ContactRepo(session, WS_ID).upsert_many(
                [ContactData(email=f"c{n}@bench.test", first_name=f"C{n}") for n in range(contacts)],
                at=APPLIED,
            )
        say(
            f"workspace with {automations} automations and {contacts} contacts ready in "
            f"{time.perf_counter() - started:.2f}s; ingesting {total} events in chunks of {chunk}"
        )
        applied = duplicates = done = 0
        ingest_seconds = 0.0
        last_report = time.perf_counter()
        for items in event_chunks(total, contacts, chunk, args.seed):
            began = time.perf_counter()
            report = ingest_events(engine, WS_ID, items, Path("bench-events.jsonl"))
            took = time.perf_counter() - began
            ingest_seconds += took
            applied += report.applied
            duplicates += report.duplicates
            done += len(items)
            if time.perf_counter() - last_report > 10 or done == total:
                last_report = time.perf_counter()
                say(
                    f"  {done}/{total} events, {done / ingest_seconds:.0f} events/s so far "
                    f"(last chunk {len(items) / took:.0f}/s)"
                )
        with transaction(engine) as session:
            fired = session.scalar(
                select(func.count()).select_from(JournalEntry).where(JournalEntry.kind == "automation.fired")
            )
            facts = session.scalar(select(func.count()).select_from(Fact))
        engine.dispose()
    if applied != total:
        raise SystemExit(f"wrong outcome: {applied} of {total} events applied ({duplicates} duplicates)")
    rate = total / ingest_seconds
    say(
        f"{total} events against {automations} automations in {ingest_seconds:.2f}s: {rate:.0f} events/s "
        f"(target {TARGET_PER_S}); {fired} automation firings, {facts} facts"
    )
    finish(
        "events",
        {
            "events": total,
            "automations": automations,
            "contacts": contacts,
            "chunk": chunk,
            "seconds": round(ingest_seconds, 3),
            "events_per_s": round(rate, 1),
            "automations_fired": fired,
            "facts": facts,
            "target_events_per_s": TARGET_PER_S,
            "ratio": round(rate / TARGET_PER_S, 3),
        },
    )
