"""`python -m bench import`: a generated CSV of N contacts through the real importer, rows per second."""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.report import finish, say
from dripflow.core.validate import load_workspace_file
from dripflow.csvio.contacts_import import import_contacts
from dripflow.store.database import make_engine, transaction
from dripflow.store.migrate import upgrade
from dripflow.store.workspaces import apply_workspace, declared_fields

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.yaml"
_ZONES = ["America/New_York", "Europe/London", "Asia/Tokyo", "Australia/Sydney", ""]
_DOMAINS = ["example.com", "example.org", "gmail.com", "yahoo.com", "gmali.com", "acme.test"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the generated CSV")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    """A realistic file: about 1% bad addresses, 1% bad zones, some repeats and typo domains."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write("email,first_name,last_name,phone,timezone,source,city,birthday,plan\n")
        for n in range(rows):
            roll = rng.random()
            email = f"user{n}@{rng.choice(_DOMAINS)}" if roll > 0.01 else f"user{n}-at-nowhere"
            if 0.01 < roll < 0.02:
                email = f"user{n - 1}@example.com"
            zone = rng.choice(_ZONES) if rng.random() > 0.01 else "Nowhere/Zone"
            phone = f"+1555{n % 10_000_000:07d}" if rng.random() < 0.3 else ""
            birthday = f"19{rng.randint(50, 99)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            out.write(f"{email},First{n},Last{n},{phone},{zone},import,City{n % 97},{birthday},basic\n")


def run(args: argparse.Namespace) -> None:
    rows = 2_000 if args.quick else args.rows
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        csv_path = Path(tmp) / "contacts.csv"
        say(f"writing {rows} rows to {csv_path}")
        write_csv(csv_path, rows)
        upgrade(url)
        engine = make_engine(url)
        now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
        with transaction(engine) as session:
            workspace = apply_workspace(
                session, load_workspace_file(DEMO), now=now, actor="bench"
            ).workspace_id
            fields = declared_fields(session, workspace)
        say(f"importing into {url}")
        started = time.perf_counter()
        report = import_contacts(engine, workspace, csv_path, now=now, fields=fields, list_key="newsletter")
        seconds = time.perf_counter() - started
        say(
            f"{report.rows} rows in {seconds:.2f}s: {report.created} created, {report.updated} updated, "
            f"{report.rejected} rejected, {report.suggested} typos flagged"
        )
        engine.dispose()
    finish(
        "import",
        {
            "rows": report.rows,
            "seconds": round(seconds, 3),
            "rows_per_s": round(report.rows / seconds, 1),
            "created": report.created,
            "updated": report.updated,
            "rejected": report.rejected,
            "suggested": report.suggested,
        },
    )
