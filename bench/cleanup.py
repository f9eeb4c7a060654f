"""`python -m bench cleanup`: `contacts clean-up` (SPEC L5) over N contacts: the plan, then the
deletion, contacts judged and deleted per second.

A third of the contacts are blacklisted and the rest inactive since long ago; every tenth one
bought something and is kept. Contacts are written straight into the table: this measures the
clean-up, not the way contacts arrive.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from bench.report import finish, say
from dripflow.core.cleanup import CleanupRequest
from dripflow.core.clock import VirtualClock
from dripflow.engine.removal import clean_up
from dripflow.store.database import make_engine, transaction
from dripflow.store.migrate import upgrade
from dripflow.store.tables import Contact, Fact, Workspace

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=100_000, help="contacts in the workspace")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")


def _fill(url: str, count: int) -> None:
    engine = make_engine(url)
    with transaction(engine) as session:
        session.add(
            Workspace(
                id="bench",
                name="Bench",
                timezone="UTC",
                definition={"workspace": {"id": "bench"}},
                definition_hash="0" * 64,
                created_at=T0,
                updated_at=T0,
            )
        )
        session.flush()
        rows = [
            {
                "workspace_id": "bench",
                "email": f"c{n}@example.com",
                "fields": {},
                "lead_status": "blacklisted" if n % 3 == 0 else "inactive",
                "lead_status_reason": "hard_bounce" if n % 3 == 0 else None,
                "created_at": T0,
                "updated_at": T0,
            }
            for n in range(count)
        ]
        session.execute(insert(Contact), rows)
        ids = list(session.scalars(select(Contact.id).where(Contact.workspace_id == "bench")))
        facts = [
            {
                "workspace_id": "bench",
                "contact_id": i,
                "kind": "product.purchased",
                "key": "course",
                "detail": {},
                "at": T0,
            }
            for i in ids[::10]
        ]
        session.execute(insert(Fact), facts)
    engine.dispose()


def run(args: argparse.Namespace) -> None:
    count = 2_000 if args.quick else args.contacts
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        say(f"writing {count} contacts into {url}")
        _fill(url, count)
        engine = make_engine(url)
        clock = VirtualClock(T0 + timedelta(days=400))
        request = CleanupRequest(blacklisted=True, inactive_since=clock.now() - timedelta(days=180))
        started = time.perf_counter()
        plan = clean_up(engine, "bench", request, clock, apply=False)
        planned = time.perf_counter()
        done = clean_up(engine, "bench", request, clock, apply=True)
        ended = time.perf_counter()
        engine.dispose()
    plan_s, apply_s = planned - started, ended - planned
    say(
        f"plan {plan_s:.2f}s ({plan.to_delete} to delete, kept {dict(plan.kept)}); "
        f"deleted {done.deleted} in {apply_s:.2f}s"
    )
    finish(
        "cleanup",
        {
            "contacts": count,
            "to_delete": plan.to_delete,
            "kept": sum(plan.kept.values()),
            "deleted": done.deleted,
            "plan_seconds": round(plan_s, 3),
            "apply_seconds": round(apply_s, 3),
            "judged_per_s": round(count / plan_s, 1),
            "deleted_per_s": round(done.deleted / apply_s, 1),
        },
    )
