"""`python -m bench sequence`: N contacts through a 5-step sequence over 90 virtual days (issue 3).

The real engine on a virtual clock (``dripflow.simulate``, a temporary SQLite file by default):
every contact subscribes during the first day, and the sequence sends five emails with day,
hour and `at` delays, a weekday rule and a send schedule. Reports wall time, steps per second and
checks that every contact got all five emails exactly once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.report import finish, say
from dripflow.core.validate import load_workspace_text
from dripflow.engine.eventfile import InputEvent
from dripflow.simulate import simulate

WORKSPACE = """\
workspace: {id: bench, name: Bench, timezone: America/New_York, default_send_time: "10:00",
            physical_address: "1 Main St, Springfield"}
mailboxes:
  - {id: news, from: "News <news@bench.test>", default: true}
schedules:
  - {id: office, timezone: contact, days: [mon, tue, wed, thu, fri], hours: ["08:00-18:00"]}
lists: [newsletter]
templates:
  welcome: {subject: "Welcome, {{ contact.first_name }}", text: "Hello {{ contact.first_name }}"}
  tips: {subject: "Tips for {{ contact.first_name }}", text: "Tip of the week"}
sequences:
  - id: nurture
    schedule: office
    start_when: [{event: list.subscribed, list: newsletter}]
    steps:
      - {id: welcome, type: email, template: welcome}
      - {id: day2, type: email, template: tips, after: {days: 2}}
      - {id: week1, type: email, template: tips, after: {days: 5}, at: "09:30"}
      - {id: week3, type: email, template: tips, after: {days: 14}, days: [tue, thu]}
      - {id: month3, type: email, template: tips, after: {days: 60}}
"""
_ZONES = ["America/New_York", "Europe/London", "Asia/Tokyo", "America/Los_Angeles", None]
START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")


def events(contacts: int) -> list[InputEvent]:
    spacing = timedelta(days=1) / contacts
    return [
        InputEvent(
            n + 1,
            START + n * spacing,
            {
                "type": "list.subscribed",
                "list": "newsletter",
                "contact": {
                    "email": f"c{n}@bench.test",
                    "first_name": f"C{n}",
                    **({"timezone": zone} if (zone := _ZONES[n % len(_ZONES)]) else {}),
                },
            },
        )
        for n in range(contacts)
    ]


def run(args: argparse.Namespace) -> None:
    contacts = 300 if args.quick else args.contacts
    workspace = load_workspace_text(WORKSPACE, "bench.yaml")
    items = events(contacts)
    until = START + timedelta(days=args.days)
    with tempfile.TemporaryDirectory() as tmp:
        say(f"simulating {contacts} contacts through 5 steps over {args.days} virtual days")
        started = time.perf_counter()
        result = simulate(workspace, items, until, database_dir=Path(tmp), database_url=args.database_url)
        seconds = time.perf_counter() - started
        sent = Counter(record["contact"] for record in result.log if record["kind"] == "message.sent")
        result.engine.dispose()
    if len(sent) != contacts or set(sent.values()) != {5}:
        raise SystemExit(f"wrong outcome: {len(sent)} contacts got mail, counts {sorted(set(sent.values()))}")
    steps = sum(sent.values())
    say(f"{steps} emails to {contacts} contacts in {seconds:.2f}s ({steps / seconds:.0f} steps/s)")
    finish(
        "sequence",
        {
            "contacts": contacts,
            "virtual_days": args.days,
            "steps": steps,
            "seconds": round(seconds, 3),
            "steps_per_s": round(steps / seconds, 1),
            "log_records": len(result.log),
        },
    )
