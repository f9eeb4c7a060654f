"""The worked examples of docs/sequences.md really do what the page says (SPEC §4-§6, X1-X5).

Each example workspace under examples/ is run through `dripflow simulate` as a user runs it (a child
process, `python -m dripflow.cli.main`), once for the log and once per `--explain`, and the sends,
times and statuses the page promises are checked here, citing the rules. Times are UTC; the
workspaces are in New York (EST, UTC-5, in November and December 2026), so 10:00 there is 15:00Z.

The last test checks that every line the page quotes is still printed by the command named above
it, so the page never shows invented or stale output.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dripflow.core.validate import load_workspace_file
from dripflow.explain import explain_contact
from dripflow.simulate import parse_at, read_events, simulate
from dripflow.store.database import transaction

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

Record = dict[str, Any]

UNTIL = {
    "step-sequence": "2026-12-04T00:00:00Z",
    "date-sequence": "2028-03-01T12:00:00Z",
    "branching": "2026-12-10T00:00:00Z",
    "enrollment-rules": "2026-12-31T00:00:00Z",
}


def _dripflow(tmp: Path, *args: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != "DRIPFLOW_DEBUG"}
    # simulate uses its own throw-away database; this only guards against touching ./dripflow.db
    env["DRIPFLOW_DATABASE_URL"] = f"sqlite:///{tmp / 'not-the-test-database.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "dripflow.cli.main", *args],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _simulate_args(name: str, until: str | None = None) -> list[str]:
    return [
        "simulate",
        str(EXAMPLES / f"{name}.yaml"),
        "--events",
        str(EXAMPLES / f"{name}-events.jsonl"),
        "--until",
        until or UNTIL[name],
    ]


class Run:
    """One example's simulation log and final state, plus `--explain` on demand."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name, self.tmp = name, tmp
        out, state = tmp / f"{name}.log", tmp / f"{name}.state.json"
        _dripflow(tmp, *_simulate_args(name), "--out", str(out), "--state", str(state))
        self.log: list[Record] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        contacts = json.loads(state.read_text(encoding="utf-8"))["contacts"]
        self.state: dict[str, list[Record]] = {item["contact"]: item["enrollments"] for item in contacts}

    def records(self, kind: str, **match: Any) -> list[Record]:
        return [r for r in self.log if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())]

    def sent(self, contact: str, sequence: str | None = None) -> list[tuple[str, str]]:
        """(time, step) of each message sent to the contact, in order."""
        match = {"contact": contact} if sequence is None else {"contact": contact, "sequence": sequence}
        return [(r["at"], r["step"]) for r in self.records("message.sent", **match)]

    def statuses(self, contact: str, sequence: str) -> list[tuple[str, str, str | None]]:
        """(time, status, reason) of each enrollment.status record of the contact in the sequence."""
        return [
            (r["at"], r["status"], r.get("reason"))
            for r in self.records("enrollment.status", contact=contact, sequence=sequence)
        ]

    def explain(self, contact: str, until: str | None = None) -> list[str]:
        return _dripflow(self.tmp, *_simulate_args(self.name, until), "--explain", contact).splitlines()


RunFactory = Callable[[str], Run]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> RunFactory:
    runs: dict[str, Run] = {}

    def get(name: str) -> Run:
        if name not in runs:
            runs[name] = Run(name, tmp_path_factory.mktemp(name))
        return runs[name]

    return get


@pytest.mark.parametrize("name", sorted(UNTIL))
def test_each_example_is_a_valid_workspace(name: str, tmp_path: Path) -> None:
    # SPEC X4: the examples the docs point at pass `dripflow validate`
    assert "ok — workspace" in _dripflow(tmp_path, "validate", str(EXAMPLES / f"{name}.yaml"))


# -- examples/step-sequence.yaml ------------------------------------------------------------------


def test_step_sequence_timing_T3_T4_T5_T6_and_inactive_step_S7(example: RunFactory) -> None:
    run = example("step-sequence")
    ann = "ann@example.com"
    assert run.sent(ann) == [
        ("2026-11-27T21:10:00Z", "hello"),  # T4: after 0, at once (Friday 16:10)
        ("2026-11-30T12:00:00Z", "tips"),  # T3 + T6: due Saturday 07:00, moved to Monday 07:00
        ("2026-12-02T15:00:00Z", "story"),  # T4: whole days, no `at`: 10:00 two days later
        ("2026-12-02T16:30:00Z", "nudge"),  # T5: 75 minutes after 10:00 is 11:15, next slot 11:30
        ("2026-12-02T19:30:00Z", "bye"),  # S7: old-promo (inactive) skipped with its 5 days; T4: +3 h
    ]
    assert run.statuses(ann, "welcome")[-1] == ("2026-12-02T19:30:00Z", "finished", None)  # S13
    assert run.explain(ann)[-1] == "Next: nothing is due in 'welcome' until a step is added (T9)."


def test_step_sequence_send_window_holds_emails_not_tasks_T6(example: RunFactory) -> None:
    run = example("step-sequence")
    bob = "bob@example.com"
    task = run.records("task.created", contact=bob)
    assert [(r["at"], r["title"], r["assignee"]) for r in task] == [
        ("2026-11-26T15:00:00Z", "Research Bob", "ann")  # a task is not held on Thanksgiving
    ]
    assert run.statuses(bob, "office-hours") == [
        ("2026-11-26T15:00:00Z", "active", None),
        ("2026-11-26T15:00:00Z", "queued", "excluded_date"),  # Thursday 10:00, an excluded date
        ("2026-11-27T14:00:00Z", "active", None),
        ("2026-11-28T10:00:00Z", "queued", "outside_schedule"),  # Saturday 05:00
        ("2026-11-30T14:00:00Z", "active", None),
        ("2026-11-30T14:00:00Z", "finished", None),
    ]
    assert run.sent(bob) == [("2026-11-27T14:00:00Z", "first"), ("2026-11-30T14:00:00Z", "second")]
    assert run.explain(bob, until="2026-11-26T18:00:00Z")[-2:] == [
        "2026-11-26T15:00:00Z  A step of 'office-hours' was held: on an excluded date of the send "
        "schedule; it waits for the next open day (T6).",
        "Next: step 'first' of 'office-hours' is due at 2026-11-27T14:00:00Z.",
    ]


def test_step_sequence_pause_and_resume_continue_or_restart_S5(example: RunFactory) -> None:
    run = example("step-sequence")
    carl, dana = "carl@example.com", "dana@example.com"
    # paused Monday 10:00 (step b was due 13:00), resumed Tuesday 15:00
    assert run.statuses(carl, "drip-continue")[1] == ("2026-11-30T15:00:00Z", "paused", None)
    assert run.sent(carl, "drip-continue") == [("2026-11-30T14:00:00Z", "a"), ("2026-12-01T20:00:00Z", "b")]
    assert run.sent(carl, "drip-restart") == [("2026-11-30T14:00:00Z", "a"), ("2026-12-02T00:00:00Z", "b")]
    # enrolled while paused: the enrollment shows paused and nothing runs until the resume
    assert run.statuses(dana, "drip-continue")[0] == ("2026-11-30T17:00:00Z", "paused", None)
    assert run.sent(dana) == [("2026-12-01T20:00:00Z", "a"), ("2026-12-02T00:00:00Z", "b")]
    paused = [
        r for r in run.records("message.sent") if "2026-11-30T15:00:00Z" <= r["at"] < "2026-12-01T20:00:00Z"
    ]
    assert not [r for r in paused if r["sequence"].startswith("drip-")]


def test_step_sequence_live_edit_inserts_and_appends_S7_T9(example: RunFactory) -> None:
    run = example("step-sequence")
    # Frank was waiting for lesson-2; lesson-1b inserted before it was due 14:00 (past): at once.
    assert run.sent("frank@example.com") == [
        ("2026-12-01T17:00:00Z", "lesson-1"),
        ("2026-12-01T23:00:00Z", "lesson-1b"),
        ("2026-12-02T21:00:00Z", "lesson-2"),
        ("2026-12-03T00:00:00Z", "lesson-3"),
    ]
    # Erin and Gina had finished: the inserted step is behind them (never sent), the appended one
    # reaches them (T9): Erin's last step fired today 16:00, +3 h = 19:00 today; Gina's fired
    # yesterday 16:00, so 19:00 yesterday has passed and it goes tomorrow at 10:00.
    assert run.sent("erin@example.com") == [
        ("2026-11-30T19:00:00Z", "lesson-1"),
        ("2026-12-01T21:00:00Z", "lesson-2"),
        ("2026-12-02T00:00:00Z", "lesson-3"),
    ]
    assert run.sent("gina@example.com") == [
        ("2026-11-29T17:00:00Z", "lesson-1"),
        ("2026-11-30T21:00:00Z", "lesson-2"),
        ("2026-12-02T15:00:00Z", "lesson-3"),
    ]
    assert run.statuses("gina@example.com", "course")[-3:] == [
        ("2026-11-30T21:00:00Z", "finished", None),
        ("2026-12-01T23:00:00Z", "active", None),
        ("2026-12-02T15:00:00Z", "finished", None),
    ]


# -- examples/date-sequence.yaml ------------------------------------------------------------------


def test_date_sequence_birthdays_every_year_in_the_contacts_zone_T1_T7(example: RunFactory) -> None:
    run = example("date-sequence")
    assert run.sent("hana@example.com") == [
        ("2026-12-01T15:00:00Z", "eve"),  # the day before, at default_send_time 10:00 New York
        ("2026-12-02T14:00:00Z", "bday"),  # 09:00 New York
        ("2027-12-01T15:00:00Z", "eve"),
        ("2027-12-02T14:00:00Z", "bday"),
    ]
    # born 29 February, living in London: 28 February in common years (T7), London time (T1)
    assert run.sent("ivan@example.com") == [
        ("2027-02-27T10:00:00Z", "eve"),
        ("2027-02-28T09:00:00Z", "bday"),
        ("2028-02-28T10:00:00Z", "eve"),
        ("2028-02-29T09:00:00Z", "bday"),
    ]


def test_date_sequence_grace_window_T8(example: RunFactory) -> None:
    run = example("date-sequence")
    # joined 1 h 30 after the 09:00 birthday step: still inside the 2 h grace, sent at once
    assert run.sent("jo@example.com")[0] == ("2026-11-24T15:30:00Z", "bday")
    # joined 2 h 30 after: an annual step waits for next year, and is not logged as missed
    assert run.sent("kim@example.com")[:2] == [
        ("2027-11-23T15:00:00Z", "eve"),
        ("2027-11-24T14:00:00Z", "bday"),
    ]
    assert run.records("step.skipped", contact="kim@example.com") == []
    assert run.explain("kim@example.com", until="2026-12-31T00:00:00Z")[-1] == (
        "Next: step 'eve' of 'birthdays' is due at 2027-11-23T15:00:00Z."
    )


def test_date_sequence_fixed_dates_in_calendar_order_and_missed_window_T7_T8(example: RunFactory) -> None:
    run = example("date-sequence")
    # listed last-call, announce, doors-open; they fire in calendar order
    assert run.sent("nora@example.com") == [
        ("2026-12-01T13:00:00Z", "announce"),
        ("2026-12-03T15:00:00Z", "doors-open"),
        ("2026-12-06T01:00:00Z", "last-call"),
    ]
    skipped = run.records("step.skipped", reason="missed_window")
    assert [(r["at"], r["contact"], r["step"]) for r in skipped] == [
        ("2026-12-03T16:30:00Z", "mia@example.com", "announce"),
        ("2026-12-03T18:00:00Z", "leo@example.com", "announce"),
        ("2026-12-03T18:00:00Z", "leo@example.com", "doors-open"),  # 3 h after its 10:00
    ]
    assert run.sent("mia@example.com") == [
        ("2026-12-03T16:30:00Z", "doors-open"),  # 1 h 30 after its 10:00: within the grace
        ("2026-12-06T01:00:00Z", "last-call"),
    ]
    assert run.sent("leo@example.com") == [("2026-12-06T01:00:00Z", "last-call")]
    assert run.statuses("leo@example.com", "launch")[-1] == ("2026-12-06T01:00:00Z", "finished", None)


# -- examples/branching.yaml ----------------------------------------------------------------------


def test_branching_split_test_and_reply_in_thread_S9_D6(example: RunFactory) -> None:
    run = example("branching")
    intros = run.records("message.sent", sequence="outreach", step="intro")
    assert {r["contact"]: r["variant"] for r in intros} == {
        "amy@example.com": "intro-b",
        "ben@example.com": "intro-a",
        "cat@example.com": "intro-a",
        "dee@example.com": "intro-a",
    }
    assert all(r["template"] == r["variant"] for r in intros)
    follow_up = run.records("message.sent", contact="amy@example.com", step="follow-up")
    assert [r["subject"] for r in follow_up] == ["Re: Amy, 15 minutes this week?"]


def test_branching_task_wait_until_and_rule_S8(example: RunFactory) -> None:
    run = example("branching")
    amy = "amy@example.com"
    tasks = run.records("task.created", sequence="outreach")
    assert {(r["contact"], r["at"], r["assignee"], r["due"]) for r in tasks} == {
        (amy, "2026-11-30T15:00:00Z", "sam", "2026-12-01T15:00:00Z"),
        ("ben@example.com", "2026-11-30T15:00:00Z", "sam", "2026-12-01T15:00:00Z"),
        ("cat@example.com", "2026-11-30T15:00:00Z", "sam", "2026-12-01T15:00:00Z"),
        ("dee@example.com", "2026-11-30T15:00:00Z", "unassigned", "2026-12-01T15:00:00Z"),
    }
    # task completed Monday 12:00; the follow-up is timed from then: next day 10:00
    assert run.sent(amy) == [("2026-11-30T14:00:00Z", "intro"), ("2026-12-01T15:00:00Z", "follow-up")]
    # tagged `booked` Tuesday 15:00: the wait ends at once and the rule completes the enrollment
    assert [(r["at"], r["step"]) for r in run.records("step.executed", contact=amy)][-2:] == [
        ("2026-12-01T20:00:00Z", "wait-booking"),
        ("2026-12-01T20:00:00Z", "booked?"),
    ]
    assert run.statuses(amy, "outreach")[-1] == ("2026-12-01T20:00:00Z", "completed", "booked")
    # Dee's task is never completed: she waits at it
    assert run.sent("dee@example.com") == [("2026-11-30T14:00:00Z", "intro")]
    assert run.state["dee@example.com"][0]["status"] == "active"
    last = run.explain("dee@example.com")[-1]
    assert last.startswith("Next: 'outreach' waits") and "'call'" in last


def test_branching_goto_is_bounded_by_max_loops_S8(example: RunFactory) -> None:
    run = example("branching")
    ben = "ben@example.com"
    assert run.sent(ben) == [
        ("2026-11-30T14:00:00Z", "intro"),
        ("2026-12-02T15:00:00Z", "follow-up"),  # task completed Tuesday 09:00: next day 10:00
        ("2026-12-05T15:00:00Z", "follow-up"),  # wait timed out Friday 10:00, goto follow-up
        ("2026-12-07T15:00:00Z", "breakup"),  # second timeout: the goto is passed over (max_loops 1)
    ]
    skipped = run.records("step.skipped", contact=ben)
    assert [(r["at"], r["step"], r["reason"]) for r in skipped] == [
        ("2026-12-07T15:00:00Z", "booked?", "max_loops")
    ]
    assert run.statuses(ben, "outreach")[-1] == ("2026-12-07T15:00:00Z", "finished", None)


def test_branching_reply_stops_the_sequence_S12(example: RunFactory) -> None:
    run = example("branching")
    assert run.statuses("cat@example.com", "outreach")[-1] == ("2026-11-30T16:00:00Z", "completed", "replied")
    assert run.sent("cat@example.com") == [("2026-11-30T14:00:00Z", "intro")]


def test_branching_routing_S10(example: RunFactory) -> None:
    run = example("branching")
    olga = run.records("message.sent", contact="olga@example.com")
    assert [(r["step"], r["mailbox"]) for r in olga] == [
        ("hi", "bob"),
        ("ps", "carol"),
    ]  # owner, then step's own
    refused = run.records("not_enrolled", contact="zed@example.com")
    assert [(r["sequence"], r["reason"], r.get("detail")) for r in refused] == [
        ("owner-intro", "missing_routing", "hi")
    ]
    assert run.sent("zed@example.com") == []


def test_branching_mailbox_pool_D8(example: RunFactory) -> None:
    run = example("branching")
    sent = run.records("message.sent", sequence="pool-intro")
    assert [(r["at"], r["contact"][:2], r["step"], r["mailbox"]) for r in sent] == [
        ("2026-12-01T14:00:00Z", "p1", "hello", "ann"),  # a tie goes to the first of the pool
        ("2026-12-01T14:00:00Z", "p2", "hello", "bob"),  # bob has more left
        ("2026-12-01T14:00:00Z", "p3", "hello", "ann"),
        ("2026-12-01T14:00:00Z", "p4", "hello", "bob"),
        ("2026-12-02T05:00:00Z", "p5", "hello", "ann"),  # both at their cap of 2: next local day
        ("2026-12-02T15:00:00Z", "p1", "again", "ann"),
        ("2026-12-02T15:00:00Z", "p2", "again", "bob"),
        ("2026-12-02T15:00:00Z", "p4", "again", "bob"),
        ("2026-12-03T05:00:00Z", "p3", "again", "ann"),  # kept ann (at its cap) rather than move
        ("2026-12-03T15:00:00Z", "p5", "again", "ann"),
    ]
    assert run.statuses("p5@example.com", "pool-intro")[1] == ("2026-12-01T14:00:00Z", "queued", "daily_cap")
    assert run.statuses("p3@example.com", "pool-intro")[1] == ("2026-12-02T15:00:00Z", "queued", "daily_cap")


# -- examples/enrollment-rules.yaml ---------------------------------------------------------------


def _refusals(run: Run, contact: str) -> list[tuple[str, str, str, str | None]]:
    return [
        (r["at"], r["sequence"], r["reason"], r.get("detail"))
        for r in run.records("not_enrolled", contact=contact)
    ]


def test_rules_one_open_enrollment_and_reenroll_never_S1_S2_S13(example: RunFactory) -> None:
    run = example("enrollment-rules")
    ann = "ann@example.com"
    assert _refusals(run, ann) == [
        ("2026-11-23T14:05:00Z", "welcome", "already_enrolled", None),  # S1: active
        ("2026-11-25T14:00:00Z", "welcome", "already_enrolled", None),  # S13: finished still counts
        ("2026-11-26T14:00:00Z", "welcome", "reenroll_never", None),  # S2: closed, reenroll never
    ]
    # S13 / §6: an unsubscribe_sequence action closes even a finished enrollment as completed
    assert run.statuses(ann, "welcome")[-1] == ("2026-11-25T15:00:00Z", "completed", "unsubscribed")


def test_rules_reenroll_cooldown_and_always_S2(example: RunFactory) -> None:
    run = example("enrollment-rules")
    bob = "bob@example.com"
    # closed 24 November 14:00Z by the reply; 30 days later is 24 December 14:00Z
    [(at, sequence, reason, detail)] = _refusals(run, bob)
    assert (at, sequence, reason) == ("2026-11-30T15:00:00Z", "webinar", "cooldown")
    assert detail is not None and "2026-12-24T14:00:00" in detail
    assert run.sent(bob) == [
        ("2026-11-23T15:00:00Z", "invite"),
        ("2026-12-24T15:00:00Z", "invite"),  # 30 days after the close: from the first step again
        ("2026-12-26T15:00:00Z", "reminder"),
    ]
    oli = "oli@example.com"
    assert run.statuses(oli, "trial")[:3] == [
        ("2026-11-30T14:00:00Z", "active", None),
        ("2026-11-30T21:00:00Z", "canceled", "manual"),
        ("2026-12-01T15:00:00Z", "active", None),
    ]
    assert run.sent(oli)[:2] == [("2026-11-30T14:00:00Z", "day0"), ("2026-12-01T15:00:00Z", "day0")]


def test_rules_multi_sequence_deny_S3(example: RunFactory) -> None:
    run = example("enrollment-rules")
    cara = "cara@example.com"
    assert _refusals(run, cara) == [("2026-11-23T16:05:00Z", "trial", "in_other_sequence", "welcome")]
    # once welcome has finished, it no longer counts (an open, *unfinished* enrollment)
    assert run.statuses(cara, "trial")[0] == ("2026-11-24T16:00:00Z", "active", None)


def test_rules_exclusions_at_enrollment_change_and_send_S4(example: RunFactory) -> None:
    run = example("enrollment-rules")
    assert _refusals(run, "dan@rival.test") == [
        ("2026-11-23T17:00:00Z", "welcome", "excluded", "competitors")
    ]
    assert run.statuses("eve@example.com", "trial")[-1] == ("2026-11-24T14:00:00Z", "canceled", "excluded")
    assert run.statuses("fay@example.com", "qualify")[-1] == (
        "2026-11-23T19:00:00Z",
        "excluded",
        "do-not-contact",
    )
    assert run.sent("fay@example.com") == []


def test_rules_recipients_skip_steps_S6(example: RunFactory) -> None:
    run = example("enrollment-rules")
    gus = "gus@example.com"
    skipped = run.records("step.skipped", contact=gus)
    assert [(r["at"], r["step"], r["reason"]) for r in skipped] == [
        ("2026-11-24T15:00:00Z", "day1", "recipients"),
        ("2026-11-26T15:00:00Z", "day3", "recipients"),
    ]
    assert run.sent(gus) == [("2026-11-23T20:00:00Z", "day0")]
    assert run.statuses(gus, "trial")[-1] == ("2026-11-26T15:00:00Z", "finished", None)


def test_rules_blocked_until_the_contact_is_updated_S11(example: RunFactory) -> None:
    run = example("enrollment-rules")
    hal, ida = "hal@example.com", "ida@example.com"
    assert run.statuses(hal, "trial")[1] == (
        "2026-11-23T21:00:00Z",
        "blocked",
        "template_variable:contact.first_name",
    )
    first = run.records("message.sent", contact=hal)[0]
    assert (first["at"], first["subject"]) == ("2026-11-24T14:00:00Z", "Welcome to your trial, Hal")
    assert [(at, status, reason) for at, status, reason in run.statuses(ida, "text-and-mail")] == [
        ("2026-11-23T22:00:00Z", "active", None),
        ("2026-11-23T22:00:00Z", "blocked", "missing_phone"),
        ("2026-11-24T14:00:00Z", "active", None),
        ("2026-11-24T14:00:00Z", "blocked", "missing_address"),
        ("2026-11-25T14:00:00Z", "active", None),
        ("2026-11-25T14:00:00Z", "finished", None),
    ]
    assert [(r["channel"], r["to"]) for r in run.records("message.sent", contact=ida)] == [
        ("sms", "+14155552671")
    ]


def test_rules_how_enrollments_end_S12_and_refusals(example: RunFactory) -> None:
    run = example("enrollment-rules")
    last = {
        name: run.statuses(f"{name}@example.com", "trial")[-1] for name in ("jay", "kay", "lou", "max", "ned")
    }
    assert last["jay"] == ("2026-11-30T16:00:00Z", "completed", "goal")
    assert last["kay"] == ("2026-11-30T17:00:00Z", "bounced", "hard_bounce")
    assert last["lou"] == ("2026-11-30T18:00:00Z", "canceled", "unsubscribed")
    assert last["max"] == ("2026-11-30T19:00:00Z", "canceled", "unsubscribed")
    assert last["ned"] == ("2026-11-30T20:00:00Z", "canceled", "complaint")
    assert run.statuses("bob@example.com", "webinar")[1] == ("2026-11-24T14:00:00Z", "completed", "replied")
    assert _refusals(run, "kay@example.com") == [("2026-12-01T14:00:00Z", "trial", "blacklisted", None)]
    assert _refusals(run, "max@example.com") == [("2026-12-01T14:00:00Z", "trial", "unsubscribed", None)]
    assert _refusals(run, "pia@example.com") == [
        ("2026-12-01T16:00:00Z", "old-promo", "sequence_archived", None)
    ]
    assert run.statuses("quin@example.com", "beta") == [("2026-12-01T17:00:00Z", "draft", None)]
    assert run.sent("quin@example.com") == []


# -- docs/sequences.md quotes real output ---------------------------------------------------------

DOC = ROOT / "docs" / "sequences.md"
# A quoted block is announced by a comment naming what produced it, on the line before the fence:
#   <!-- dripflow: EXAMPLE [--explain CONTACT] [--until ISO] -->   (the log, or one explanation)
#   <!-- file: examples/EXAMPLE.yaml -->                             (an excerpt of a workspace)
_BLOCK = re.compile(r"^( *)<!-- (dripflow|file): (.+?) -->\n\1```(\w+)\n(.*?)^\1```", re.M | re.S)
_FENCE = re.compile(r"^ *```(text|json|yaml)$", re.M)


def _quoted_blocks() -> list[tuple[str, str, list[str]]]:
    text = DOC.read_text(encoding="utf-8")
    blocks = []
    for match in _BLOCK.finditer(text):
        indent = len(match[1])
        lines = [line[indent:] for line in match[5].splitlines() if line.strip()]
        blocks.append((match[2], match[3], lines))
    assert len(blocks) == len(_FENCE.findall(text)), "every text/json/yaml block needs a source comment"
    return blocks


def _outputs(tmp: Path, sources: list[str]) -> dict[str, set[str]]:
    """What each source prints: one simulation per example and `--until`, in this process, through the
    functions `dripflow simulate` prints from (the log's lines, `explain_contact` for `--explain`)."""
    runs: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
    for source in sources:
        name, *rest = source.split()
        options = dict(zip(rest[::2], rest[1::2], strict=True))
        assert set(options) <= {"--explain", "--until"}, source
        key = (name, options.get("--until", UNTIL[name]))
        runs.setdefault(key, []).append((source, options.get("--explain")))
    found: dict[str, set[str]] = {}
    for (name, until), wanted in runs.items():
        directory = tmp / f"{name}-{until[:10]}"
        directory.mkdir()
        events = EXAMPLES / f"{name}-events.jsonl"
        result = simulate(
            load_workspace_file(EXAMPLES / f"{name}.yaml"),
            read_events(events),
            parse_at(until, "--until"),
            events_path=events,
            database_dir=directory,
        )
        try:
            with transaction(result.engine) as session:
                for source, contact in wanted:
                    if contact is None:
                        found[source] = set(result.lines())
                    else:
                        found[source] = set(explain_contact(session, result.workspace_id, contact))
        finally:
            result.engine.dispose()
    return found


def test_every_line_quoted_in_the_doc_is_real_output(tmp_path: Path) -> None:
    # X1, X3, X5: docs/sequences.md copies the log and the explanations; each quoted line must still
    # be printed by the command named above it. When this fails, re-run that command and update the
    # doc (or fix the engine if the doc describes the contract).
    blocks = _quoted_blocks()
    outputs = _outputs(tmp_path, sorted({source for kind, source, _ in blocks if kind == "dripflow"}))
    missing = []
    for kind, source, lines in blocks:
        if kind == "file":
            workspace = (ROOT / source).read_text(encoding="utf-8")
            missing += [f"{source}: {line}" for line in lines if line.strip() not in workspace]
        else:
            missing += [
                f"dripflow simulate {source}: {line}" for line in lines if line not in outputs[source]
            ]
    assert not missing, "docs/sequences.md quotes lines the command no longer prints:\n" + "\n".join(missing)
