"""`python -m bench simulate`: N contacts through a 5-step sequence over 90 virtual days, through
the `dripflow simulate` command (issues 3 and 7; target: 10,000 contacts in under 30 s).

The workspace and the events are written to files and `dripflow simulate` runs in a child process,
as a user runs it: every contact subscribes during the first virtual day (one event each), and
the sequence sends five emails with day, hour and `at` delays, a weekday rule and a send schedule
in several time zones. Reports wall time, steps per second and the child's peak RSS, and checks
that every contact got all five emails exactly once.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.report import finish, say
from dripflow.engine.eventfile import InputEvent, format_at

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
    until = START + timedelta(days=args.days)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bench.yaml").write_text(WORKSPACE, encoding="utf-8")
        with (folder / "events.jsonl").open("w", encoding="utf-8") as out:
            for item in events(contacts):
                out.write(json.dumps({"at": format_at(item.at), **item.data}) + "\n")
        command = [
            sys.executable, "-m", "dripflow.cli.main", "simulate", str(folder / "bench.yaml"),
            "--events", str(folder / "events.jsonl"), "--until", format_at(until),
            "--out", str(folder / "log.jsonl"),
        ]  # fmt: skip
        say(f"dripflow simulate: {contacts} contacts through 5 steps over {args.days} virtual days")
        started = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - started
        rss_mb = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
        sent: Counter[str] = Counter()
        records = 0
        with (folder / "log.jsonl").open(encoding="utf-8") as log:
            for line in log:
                records += 1
                record = json.loads(line)
                if record["kind"] == "message.sent":
                    sent[record["contact"]] += 1
    if len(sent) != contacts or set(sent.values()) != {5}:
        raise SystemExit(f"wrong outcome: {len(sent)} contacts got mail, counts {sorted(set(sent.values()))}")
    steps = sum(sent.values())
    say(f"{steps} emails to {contacts} contacts in {seconds:.2f}s ({steps / seconds:.0f} steps/s)")
    finish(
        "simulate",
        {
            "contacts": contacts,
            "virtual_days": args.days,
            "steps": steps,
            "seconds": round(seconds, 3),
            "steps_per_s": round(steps / seconds, 1),
            "log_records": records,
            "child_peak_rss_mb": rss_mb,
            "target_seconds": 30,
        },
    )
