"""The sequence engine end to end through `simulate` (SPEC X1–X3): the real store and scheduler on a
virtual clock. Each test reads the log a user would read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

WORKSPACE = """\
workspace:
  id: shop
  name: Shop
  timezone: America/New_York
  default_send_time: "10:00"
  physical_address: "1 Main St"
ruleset:
  exclusions:
    - {name: competitors, if: {email_domain: [rival.test]}}
  frequency: {max: 3, per: 7d}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", daily_cap: 2, default: true}
schedules:
  - {id: office, timezone: workspace, days: [mon, tue, wed, thu, fri], hours: ["09:00-17:00"]}
fields:
  - {key: birthday, type: date}
lists: [customers]
tags: [vip, club]
catalog:
  products: [course]
templates:
  hello: {subject: "Hello {{ contact.first_name }}", text: "Hi"}
  tips: {subject: "Tips", text: "Tips"}
  bday: {subject: "Happy birthday", text: "Cake"}
sequences:
  - id: welcome
    reenroll: never
    start_when: [{event: list.subscribed, list: customers}]
    stop_on: [replied]
    steps:
      - {id: one, type: email, template: hello}
      - {id: two, type: email, template: tips, after: {days: 1}}
      - {id: three, type: email, template: tips, after: {days: 1}}
  - id: office-hours
    schedule: office
    steps:
      - {id: first, type: email, template: tips}
  - id: birthdays
    kind: date
    start_when: [{event: tag.assigned, tag: club}]
    steps:
      - {id: cake, type: email, template: bday, on: {field: birthday}, at: "09:00", annually: true}
automations:
  - id: buyers
    when: {event: product.purchased, product: course}
    then: [{add_tag: vip}, {subscribe_list: customers}]
"""


def _run(tmp_path: Path, events: list[dict[str, Any]], until: str, *extra: str) -> list[dict[str, Any]]:
    workspace = tmp_path / "shop.yaml"
    workspace.write_text(WORKSPACE)
    events_file = tmp_path / "events.jsonl"
    events_file.write_text("".join(json.dumps(event) + "\n" for event in events))
    out = tmp_path / "log.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dripflow.cli.main",
            "simulate",
            str(workspace),
            "--events",
            str(events_file),
            "--until",
            until,
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def _kinds(log: list[dict[str, Any]], kind: str, **match: Any) -> list[dict[str, Any]]:
    return [r for r in log if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())]


def _ann(**extra: Any) -> dict[str, Any]:
    return {"email": "ann@example.com", "first_name": "Ann", **extra}


def test_T3_T4_step_timing_and_S13_finished(tmp_path: Path) -> None:
    log = _run(
        tmp_path,
        [{"at": "2026-11-23T14:00:00Z", "type": "list.subscribed", "contact": _ann(), "list": "customers"}],
        "2026-12-31T00:00:00Z",
    )
    sent = _kinds(log, "message.sent", sequence="welcome")
    # T3: the first step at once; T4: whole days with no `at` fire at default_send_time (10:00 New York)
    assert [(r["at"], r["step"]) for r in sent] == [
        ("2026-11-23T14:00:00Z", "one"),
        ("2026-11-24T15:00:00Z", "two"),
        ("2026-11-25T15:00:00Z", "three"),
    ]
    assert sent[0]["subject"] == "Hello Ann"
    assert (
        _kinds(log, "enrollment.status", sequence="welcome", status="finished")[0]["at"]
        == "2026-11-25T15:00:00Z"
    )


def test_S1_already_enrolled_and_S2_reenroll_never(tmp_path: Path) -> None:
    log = _run(
        tmp_path,
        [
            {"at": "2026-11-23T14:00:00Z", "type": "admin.enroll", "contact": _ann(), "sequence": "welcome"},
            {
                "at": "2026-11-23T14:05:00Z",
                "type": "admin.enroll",
                "contact": "ann@example.com",
                "sequence": "welcome",
            },
            {
                "at": "2026-11-23T14:10:00Z",
                "type": "admin.unenroll",
                "contact": "ann@example.com",
                "sequence": "welcome",
            },
            {
                "at": "2026-11-23T14:15:00Z",
                "type": "admin.enroll",
                "contact": "ann@example.com",
                "sequence": "welcome",
            },
        ],
        "2026-11-24T00:00:00Z",
    )
    refusals = [(r["at"], r["reason"]) for r in _kinds(log, "not_enrolled", sequence="welcome")]
    assert refusals == [
        ("2026-11-23T14:05:00Z", "already_enrolled"),
        ("2026-11-23T14:15:00Z", "reenroll_never"),
    ]
    assert _kinds(log, "enrollment.status", status="canceled", reason="manual")


def test_D3_an_event_with_an_id_applies_once(tmp_path: Path) -> None:
    purchase = {"type": "product.purchased", "contact": _ann(), "product": "course", "id": "order-1"}
    log = _run(
        tmp_path,
        [{**purchase, "at": "2026-11-23T14:00:00Z"}, {**purchase, "at": "2026-11-23T14:01:00Z"}],
        "2026-11-23T15:00:00Z",
    )
    assert len(_kinds(log, "automation.fired", automation="buyers")) == 1
    assert len(_kinds(log, "message.sent", step="one")) == 1


def test_A1_a_no_op_action_emits_nothing(tmp_path: Path) -> None:
    log = _run(
        tmp_path,
        [
            {
                "at": "2026-11-23T14:00:00Z",
                "type": "product.purchased",
                "contact": _ann(),
                "product": "course",
            },
            {
                "at": "2026-11-23T14:30:00Z",
                "type": "product.purchased",
                "contact": "ann@example.com",
                "product": "course",
            },
        ],
        "2026-11-23T15:00:00Z",
    )
    fired = _kinds(log, "automation.fired", automation="buyers")
    assert len(fired) == 2
    # the second purchase re-adds a tag and a list the contact already has: no action is applied
    assert [r["at"] for r in _kinds(log, "action.applied", action="add_tag")] == ["2026-11-23T14:00:00Z"]
    assert len(_kinds(log, "enrollment.status", sequence="welcome", status="active")) == 1


def test_T6_send_schedule_holds_until_the_window_opens(tmp_path: Path) -> None:
    # Saturday 2026-11-28 14:00 New York: the office window opens Monday 09:00
    log = _run(
        tmp_path,
        [
            {
                "at": "2026-11-28T19:00:00Z",
                "type": "admin.enroll",
                "contact": _ann(),
                "sequence": "office-hours",
            }
        ],
        "2026-12-05T00:00:00Z",
    )
    held = _kinds(log, "enrollment.status", sequence="office-hours", status="queued")
    assert held[0]["reason"] == "outside_schedule"
    assert [r["at"] for r in _kinds(log, "message.sent", sequence="office-hours")] == ["2026-11-30T14:00:00Z"]


def test_S4_exclusion_at_enrollment_and_S12_reply_stops(tmp_path: Path) -> None:
    log = _run(
        tmp_path,
        [
            {
                "at": "2026-11-23T14:00:00Z",
                "type": "admin.enroll",
                "contact": "eve@rival.test",
                "sequence": "welcome",
            },
            {"at": "2026-11-23T14:00:00Z", "type": "admin.enroll", "contact": _ann(), "sequence": "welcome"},
            {"at": "2026-11-23T16:00:00Z", "type": "email.replied", "contact": "ann@example.com"},
        ],
        "2026-12-31T00:00:00Z",
    )
    assert _kinds(log, "not_enrolled", contact="eve@rival.test")[0]["reason"] == "excluded"
    assert (
        _kinds(log, "enrollment.status", contact="ann@example.com", status="completed")[0]["reason"]
        == "replied"
    )
    assert [r["step"] for r in _kinds(log, "message.sent", contact="ann@example.com")] == ["one"]


def test_S11_missing_variable_blocks_and_an_update_retries(tmp_path: Path) -> None:
    log = _run(
        tmp_path,
        [
            {
                "at": "2026-11-23T14:00:00Z",
                "type": "admin.enroll",
                "contact": "bo@example.com",
                "sequence": "welcome",
            },
            {
                "at": "2026-11-23T18:00:00Z",
                "type": "contact.created",
                "contact": {"email": "bo@example.com", "first_name": "Bo"},
            },
        ],
        "2026-11-23T20:00:00Z",
    )
    blocked = _kinds(log, "enrollment.status", status="blocked")
    assert blocked[0]["reason"] == "template_variable:contact.first_name"
    sent = _kinds(log, "message.sent", step="one")
    assert [(r["at"], r["subject"]) for r in sent] == [("2026-11-23T18:00:00Z", "Hello Bo")]


def test_D4_daily_cap_and_D7_frequency_cap_hold_messages(tmp_path: Path) -> None:
    events = [
        {
            "at": "2026-11-23T14:00:00Z",
            "type": "admin.enroll",
            "contact": f"c{n}@example.com",
            "sequence": "office-hours",
        }
        for n in range(3)
    ]
    log = _run(tmp_path, events, "2026-11-26T00:00:00Z")
    sent = _kinds(log, "message.sent", sequence="office-hours")
    # the mailbox sends two a day (D4); the third waits for the next local day and its window (T6)
    assert [r["at"] for r in sent] == ["2026-11-23T14:00:00Z", "2026-11-23T14:00:00Z", "2026-11-24T14:00:00Z"]
    assert _kinds(log, "enrollment.status", status="queued", reason="daily_cap")


def test_T7_T8_annual_date_step(tmp_path: Path) -> None:
    log = _run(
        tmp_path,
        [
            {
                "at": "2026-11-23T14:00:00Z",
                "type": "tag.assigned",
                "contact": _ann(fields={"birthday": "1992-02-29"}),
                "tag": "club",
            },
        ],
        "2028-03-01T00:00:00Z",
    )
    # T7: 29 Feb becomes 28 Feb in other years, at 09:00 New York
    assert [r["at"] for r in _kinds(log, "message.sent", sequence="birthdays")] == [
        "2027-02-28T14:00:00Z",
        "2028-02-29T14:00:00Z",
    ]


def test_X1_the_same_input_gives_the_same_bytes(tmp_path: Path) -> None:
    events = [
        {"at": "2026-11-23T14:00:00Z", "type": "product.purchased", "contact": _ann(), "product": "course"},
        {
            "at": "2026-11-23T15:00:00Z",
            "type": "admin.enroll",
            "contact": "bob@example.com",
            "sequence": "office-hours",
        },
    ]
    first = _run(
        tmp_path / "a" if (tmp_path / "a").mkdir() is None else tmp_path, events, "2027-01-01T00:00:00Z"
    )
    second = _run(
        tmp_path / "b" if (tmp_path / "b").mkdir() is None else tmp_path, events, "2027-01-01T00:00:00Z"
    )
    assert first == second
    assert len(first) > 5


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"at": "2026-11-23T14:00:00Z", "type": "no.such", "contact": "a@example.com"}',
            "unknown event type",
        ),
        ("not json", "not a JSON object"),
        ('{"at": "yesterday", "type": "tag.assigned"}', "is not an ISO time"),
    ],
)
def test_bad_events_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "shop.yaml").write_text(WORKSPACE)
    (tmp_path / "events.jsonl").write_text(
        '{"at": "2026-11-23T13:00:00Z", "type": "contact.created", '
        '"contact": "a@example.com"}\n' + line + "\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dripflow.cli.main",
            "simulate",
            str(tmp_path / "shop.yaml"),
            "--events",
            str(tmp_path / "events.jsonl"),
            "--until",
            "2026-12-01T00:00:00Z",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "events.jsonl:2" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_X5_explain_tells_why_and_what_next(tmp_path: Path) -> None:
    (tmp_path / "shop.yaml").write_text(WORKSPACE)
    events = [
        {
            "at": "2026-11-23T14:00:00Z",
            "type": "admin.enroll",
            "contact": "bo@example.com",
            "sequence": "welcome",
        },
        {
            "at": "2026-11-23T15:00:00Z",
            "type": "admin.enroll",
            "contact": "bo@example.com",
            "sequence": "welcome",
        },
    ]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(event) + "\n" for event in events))
    result = subprocess.run(
        [
            sys.executable, "-m", "dripflow.cli.main", "simulate", str(tmp_path / "shop.yaml"),
            "--events", str(tmp_path / "events.jsonl"), "--until", "2026-11-24T00:00:00Z",
            "--explain", "bo@example.com",
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == "2026-11-23T14:00:00Z  Entered sequence 'welcome' (by admin)."
    assert lines[2] == "2026-11-23T14:00:00Z  The contact's lead status became active."  # L1
    assert "needs contact.first_name" in lines[3] and "retries when the contact is updated" in lines[3]
    assert "the contact was already in it (S1)" in lines[4]
    assert (
        lines[-1]
        == "Next: 'welcome' waits for the contact to be updated (template_variable:contact.first_name)."
    )
