"""Lifecycle rules found missing by the worked examples: drafts going live (§6 `draft`), S12
`clicked`, L1 repeated soft bounces, and S8/S7 a task wait kept across a live edit."""

from __future__ import annotations

from typing import Any

from tests.integration.engine.conftest import RunSim

WS = """\
workspace: {id: shop, name: Shop, timezone: UTC, default_send_time: "10:00", physical_address: "1 Main St"}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
catalog:
  links: {register: "https://shop.test/register"}
templates:
  hello: {subject: "Hello", text: "Hi"}
sequences:
  - id: beta
    status: draft
    steps:
      - {id: one, type: email, template: hello}
      - {id: two, type: email, template: hello, after: {days: 1}}
  - id: webinar
    stop_on: [clicked]
    steps:
      - {id: invite, type: email, template: hello}
      - {id: reminder, type: email, template: hello, after: {days: 2}}
  - id: trial
    steps:
      - {id: a, type: email, template: hello}
      - {id: b, type: email, template: hello, after: {days: 1}}
      - {id: c, type: email, template: hello, after: {days: 1}}
      - {id: d, type: email, template: hello, after: {days: 1}}
  - id: outreach
    steps:
      - {id: intro, type: email, template: hello}
      - {id: call, type: task, title: "Call", pause_until_complete: true}
      - {id: follow, type: email, template: hello, after: {days: 1}}
"""
BETA_LIVE = {
    "id": "beta",
    "status": "active",
    "steps": [
        {"id": "one", "type": "email", "template": "hello"},
        {"id": "two", "type": "email", "template": "hello", "after": {"days": 1}},
    ],
}
OUTREACH_EDITED = {
    "id": "outreach",
    "steps": [
        {"id": "intro", "type": "email", "template": "hello"},
        {"id": "call", "type": "task", "title": "Call", "pause_until_complete": True},
        {"id": "nudge", "type": "email", "template": "hello", "after": {"hours": 1}},
        {"id": "follow", "type": "email", "template": "hello", "after": {"days": 1}},
    ],
}


def ev(at: str, event_type: str, contact: str | None = None, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"at": at, "type": event_type, **fields}
    if contact is not None:
        event["contact"] = contact
    return event


def test_draft_enrollments_start_when_the_sequence_goes_live(run_sim: RunSim) -> None:
    """§6 `draft`: nothing runs while the sequence is a draft; once it is active (by a live edit)
    the first step fires at once, and the next one a day later (T3/T4)."""
    log = run_sim(
        WS,
        [
            ev("2026-01-05T09:00:00Z", "admin.enroll", "q@x.test", sequence="beta"),
            ev("2026-01-06T12:00:00Z", "admin.sequence.update", sequence=BETA_LIVE),
        ],
        "2026-01-10T00:00:00Z",
    )
    assert log.statuses("q@x.test", "beta")[:2] == [("draft", None), ("active", None)]
    assert [(r["at"], r["step"]) for r in log.sent(sequence="beta")] == [
        ("2026-01-06T12:00:00Z", "one"),
        ("2026-01-07T10:00:00Z", "two"),
    ]


def test_draft_enrollments_start_on_resume(run_sim: RunSim) -> None:
    """§6 `draft` and S5: `admin.sequence.resume` makes a draft sequence active too."""
    log = run_sim(
        WS,
        [
            ev("2026-01-05T09:00:00Z", "admin.enroll", "q@x.test", sequence="beta"),
            ev("2026-01-05T15:00:00Z", "admin.sequence.resume", sequence="beta"),
        ],
        "2026-01-06T00:00:00Z",
    )
    assert [(r["at"], r["step"]) for r in log.sent(sequence="beta")] == [("2026-01-05T15:00:00Z", "one")]


def test_s12_a_click_in_an_email_of_the_sequence_completes_it(run_sim: RunSim) -> None:
    """S12 `clicked`: a click on a link of the sequence's email, named by its message, completes
    the enrollment; the reminder is never sent. A click in another sequence's email does not."""
    log = run_sim(
        WS,
        [
            ev("2026-01-05T09:00:00Z", "admin.enroll", "b@x.test", sequence="webinar"),
            ev("2026-01-05T09:00:00Z", "admin.enroll", "b@x.test", sequence="trial"),
            ev(
                "2026-01-05T11:00:00Z",
                "link.clicked",
                "b@x.test",
                link="register",
                message="<enrollment.1.1.shop@shop.test>",
            ),
        ],
        "2026-01-10T00:00:00Z",
    )
    assert log.statuses("b@x.test", "webinar")[-1] == ("completed", "clicked")
    assert [r["step"] for r in log.sent(contact="b@x.test", sequence="webinar")] == ["invite"]
    assert log.enrollment("b@x.test", "trial")["status"] == "finished"


def test_s12_a_click_without_message_means_the_latest_email(run_sim: RunSim) -> None:
    log = run_sim(
        WS,
        [
            ev("2026-01-05T09:00:00Z", "admin.enroll", "b@x.test", sequence="webinar"),
            ev("2026-01-05T11:00:00Z", "link.clicked", "b@x.test", link="register"),
        ],
        "2026-01-10T00:00:00Z",
    )
    assert log.statuses("b@x.test", "webinar")[-1] == ("completed", "clicked")


def test_l1_three_soft_bounces_in_a_row_blacklist_and_bounce(run_sim: RunSim) -> None:
    """L1 and §6 `bounced repeated_soft_bounce`: the third consecutive soft bounce blacklists the
    contact and closes the enrollment; two in a row do nothing."""
    soft = {"kind": "soft"}
    log = run_sim(
        WS,
        [
            ev("2026-01-05T09:00:00Z", "admin.enroll", "j@x.test", sequence="trial"),
            ev("2026-01-05T09:30:00Z", "email.bounced", "j@x.test", **soft),
            ev("2026-01-06T10:30:00Z", "email.bounced", "j@x.test", **soft),
            ev("2026-01-07T10:30:00Z", "email.bounced", "j@x.test", **soft),
        ],
        "2026-01-12T00:00:00Z",
    )
    assert [r["step"] for r in log.sent(contact="j@x.test")] == ["a", "b", "c"]
    assert log.statuses("j@x.test", "trial")[-1] == ("bounced", "repeated_soft_bounce")
    assert log.of("contact.status", contact="j@x.test", status="blacklisted") == [
        {
            "at": "2026-01-07T10:30:00Z",
            "kind": "contact.status",
            "contact": "j@x.test",
            "status": "blacklisted",
            "reason": "repeated_soft_bounce",
        }
    ]


def test_l1_a_delivered_email_between_soft_bounces_resets_the_count(run_sim: RunSim) -> None:
    soft = {"kind": "soft"}
    log = run_sim(
        WS,
        [
            ev("2026-01-05T09:00:00Z", "admin.enroll", "j@x.test", sequence="trial"),
            ev("2026-01-05T09:30:00Z", "email.bounced", "j@x.test", **soft),
            ev("2026-01-06T10:30:00Z", "email.bounced", "j@x.test", **soft),
            # email c (07 Jan) is not reported as bounced; d bounces
            ev("2026-01-08T10:30:00Z", "email.bounced", "j@x.test", **soft),
        ],
        "2026-01-12T00:00:00Z",
    )
    assert [r["step"] for r in log.sent(contact="j@x.test")] == ["a", "b", "c", "d"]
    assert log.enrollment("j@x.test", "trial")["status"] == "finished"
    assert not log.of("contact.status", contact="j@x.test", status="blacklisted")


def test_s8_s7_a_live_edit_keeps_a_contact_waiting_on_its_task(run_sim: RunSim) -> None:
    """S8 `pause_until_complete` survives S7 live edits: the contact waits for the task, then goes
    on to the step that now follows it."""
    log = run_sim(
        WS,
        [
            ev("2026-01-05T09:00:00Z", "admin.enroll", "d@x.test", sequence="outreach"),
            ev("2026-01-06T09:00:00Z", "admin.sequence.update", sequence=OUTREACH_EDITED),
            ev("2026-01-08T09:00:00Z", "admin.task.complete", "d@x.test", sequence="outreach", step="call"),
        ],
        "2026-01-12T00:00:00Z",
    )
    assert [(r["at"], r["step"]) for r in log.sent(contact="d@x.test")] == [
        ("2026-01-05T09:00:00Z", "intro"),
        ("2026-01-08T10:00:00Z", "nudge"),
        ("2026-01-09T10:00:00Z", "follow"),
    ]
