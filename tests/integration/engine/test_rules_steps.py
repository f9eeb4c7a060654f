"""Task, rule, goto, wait_until, fulfillment, postcard and SMS steps (SPEC S8, S11), split tests
(S9), mailbox routing (S10) and mailbox pools (D8, D4), end to end through the real engine on both
stores. Each test reads the X3 log (or the rows a user would export) the way a user would.

Dates: 2026-01-05 is a Monday; every workspace here is in UTC so log times read as wall times.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select

from dripflow.store.database import transaction
from dripflow.store.tables import Contact, Fulfillment, Task
from tests.integration.engine.conftest import Log, RunSim

HEAD = """\
workspace: {id: shop, name: Shop, timezone: UTC, default_send_time: "10:00", physical_address: "1 Main St"}
"""


def _enroll(at: str, contact: str | dict[str, Any], sequence: str) -> dict[str, Any]:
    return {"at": at, "type": "admin.enroll", "contact": contact, "sequence": sequence}


def _fulfillments(log: Log, kind: str) -> list[tuple[str | None, str, dict[str, Any]]]:
    """(contact email, list, detail) of the fulfillment rows of ``kind``, in the order written."""
    with transaction(log.result.engine) as session:
        rows = session.execute(
            select(Contact.email, Fulfillment.list, Fulfillment.detail)
            .join(Contact, Contact.id == Fulfillment.contact_id)
            .where(Fulfillment.workspace_id == log.result.workspace_id, Fulfillment.kind == kind)
            .order_by(Fulfillment.id)
        )
        return [(email, name, dict(detail)) for email, name, detail in rows]


# -- S8 task steps ----------------------------------------------------------------------------------

TASKS = (
    HEAD
    + """\
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
  - {id: bob, from: "Bob <bob@shop.test>"}
templates:
  hello: {subject: "Hello", text: "Hi"}
sequences:
  - id: calls
    steps:
      - {id: call, type: task, title: "Call {{ contact.first_name }}", assignee: owner,
         due: {days: 1, hours: 2}}
      - {id: after-call, type: email, template: hello}
  - id: gated
    steps:
      - {id: call, type: task, title: "Call {{ contact.first_name }}", due: {days: 1},
         pause_until_complete: true}
      - {id: follow-up, type: email, template: hello, after: {hours: 1}}
"""
)


def test_s8_task_step_creates_a_task_for_the_contacts_owner_due_after_due(run_sim: RunSim) -> None:
    """S8: `task` creates a task titled from its template, for `owner` (the contact's owner), due
    `due` after it was created; without pause_until_complete the sequence goes straight on."""
    contact = {"email": "cy@x.test", "first_name": "Cy", "owner": "bob"}
    log = run_sim(TASKS, [_enroll("2026-01-05T09:00:00Z", contact, "calls")], "2026-01-08T00:00:00Z")
    tasks = [{k: v for k, v in r.items() if k != "kind"} for r in log.of("task.created")]
    assert tasks == [
        {
            "at": "2026-01-05T09:00:00Z",
            "contact": "cy@x.test",
            "sequence": "calls",
            "step": "call",
            "title": "Call Cy",
            "assignee": "bob",
            "due": "2026-01-06T11:00:00Z",
        }
    ]
    assert log.of("step.executed", contact="cy@x.test", step="call")[0]["type"] == "task"
    assert [(r["at"], r["step"]) for r in log.sent()] == [("2026-01-05T09:00:00Z", "after-call")]
    with transaction(log.result.engine) as session:
        stored = session.execute(select(Task.title, Task.assignee, Task.completed_at)).all()
    assert [tuple(row) for row in stored] == [("Call Cy", "bob", None)]


def test_s8_task_for_a_contact_without_owner_goes_to_the_workspace_default_user(run_sim: RunSim) -> None:
    """S8: `assignee: owner` is the contact's owner, *else the workspace default user*. Users are the
    owners of mailboxes (an owner routes to the mailbox named after them, S10), so the default user
    is the one of the default mailbox, `ann`."""
    contact = {"email": "dee@x.test", "first_name": "Dee"}
    log = run_sim(TASKS, [_enroll("2026-01-05T09:00:00Z", contact, "calls")], "2026-01-06T00:00:00Z")
    assert [(r["title"], r["assignee"]) for r in log.of("task.created")] == [("Call Dee", "ann")]


def test_s8_pause_until_complete_waits_for_admin_task_complete(run_sim: RunSim) -> None:
    """S8: with pause_until_complete the enrollment waits for the task, however long; completing it
    (`admin.task.complete`, X2) lets it go on, the next step timed from the completion."""
    contact = {"email": "cy@x.test", "first_name": "Cy", "owner": "bob"}
    events = [
        _enroll("2026-01-05T09:00:00Z", contact, "gated"),
        # completing a task of another step does not release the enrollment
        {
            "at": "2026-01-06T08:00:00Z",
            "type": "admin.task.complete",
            "contact": "cy@x.test",
            "sequence": "gated",
            "step": "follow-up",
        },
        {
            "at": "2026-01-07T15:00:00Z",
            "type": "admin.task.complete",
            "contact": "cy@x.test",
            "sequence": "gated",
            "step": "call",
        },
    ]
    log = run_sim(TASKS, events, "2026-01-09T00:00:00Z")
    assert [(r["at"], r["title"], r["due"]) for r in log.of("task.created")] == [
        ("2026-01-05T09:00:00Z", "Call Cy", "2026-01-06T09:00:00Z")
    ]
    assert [(r["at"], r["step"]) for r in log.sent(sequence="gated")] == [
        ("2026-01-07T16:00:00Z", "follow-up")
    ]
    assert log.enrollment("cy@x.test", "gated")["status"] == "finished"


def test_s8_pause_until_complete_is_also_released_by_a_task_completed_event(run_sim: RunSim) -> None:
    """S8: the enrollment waits for `task.completed`: the event naming the task releases it."""
    events = [
        _enroll("2026-01-05T09:00:00Z", {"email": "cy@x.test", "first_name": "Cy"}, "gated"),
        {"at": "2026-01-06T12:00:00Z", "type": "task.completed", "contact": "cy@x.test", "task": "call"},
    ]
    log = run_sim(TASKS, events, "2026-01-09T00:00:00Z")
    assert [(r["at"], r["step"]) for r in log.sent(sequence="gated")] == [
        ("2026-01-06T13:00:00Z", "follow-up")
    ]


def test_s8_pause_until_complete_never_completed_never_goes_on(run_sim: RunSim) -> None:
    """S8: an open task holds the enrollment: nothing after it is sent, it is still in the sequence."""
    contact = {"email": "cy@x.test", "first_name": "Cy"}
    log = run_sim(TASKS, [_enroll("2026-01-05T09:00:00Z", contact, "gated")], "2026-03-01T00:00:00Z")
    assert log.sent() == []
    state = log.enrollment("cy@x.test", "gated")
    assert (state["status"], state["due_at"]) == ("active", None)


# -- S8 rule, goto, wait_until ---------------------------------------------------------------------

RULES = (
    HEAD
    + """\
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
tags: [vip, engaged, cold, buyer]
templates:
  hello: {subject: "Hello", text: "Hi"}
  bye: {subject: "Bye", text: "Bye"}
sequences:
  - id: sort
    steps:
      - {id: check, type: rule, if: {has_tag: vip}, then: [{add_tag: engaged}], else: [{add_tag: cold}]}
  - id: loop
    max_loops: 2
    steps:
      - {id: hello, type: email, template: hello}
      - {id: again, type: rule, after: {days: 1}, then: [{goto: hello}]}
      - {id: bye, type: email, template: bye}
  - id: waiting
    steps:
      - {id: wait-buy, type: wait_until, until: {has_tag: buyer}, timeout: {days: 3}}
      - {id: next, type: email, template: hello}
"""
)


def test_s8_rule_step_runs_then_when_if_holds_else_otherwise(run_sim: RunSim) -> None:
    """S8: a `rule` step evaluates `if` and runs `then` or `else` (and never both)."""
    events = [
        {"at": "2026-01-05T08:00:00Z", "type": "tag.assigned", "contact": "vip@x.test", "tag": "vip"},
        _enroll("2026-01-05T09:00:00Z", "vip@x.test", "sort"),
        _enroll("2026-01-05T09:00:00Z", "plain@x.test", "sort"),
    ]
    log = run_sim(RULES, events, "2026-01-06T00:00:00Z")
    applied = [(r["contact"], r["action"], r["value"], r["by"]) for r in log.of("action.applied")]
    assert applied == [
        ("vip@x.test", "add_tag", "engaged", "step:sort.check"),
        ("plain@x.test", "add_tag", "cold", "step:sort.check"),
    ]
    assert [(r["contact"], r["type"]) for r in log.of("step.executed", step="check")] == [
        ("vip@x.test", "rule"),
        ("plain@x.test", "rule"),
    ]
    assert log.enrollment("vip@x.test", "sort")["status"] == "finished"


def test_s8_goto_jumps_to_a_step_and_is_passed_over_after_max_loops(run_sim: RunSim) -> None:
    """S8: `goto` jumps to a step id; after `max_loops` (2) gotos the goto is passed over
    (`step.skipped`, `max_loops`) and the enrollment goes on to the step after the rule."""
    log = run_sim(RULES, [_enroll("2026-01-05T09:00:00Z", "lo@x.test", "loop")], "2026-01-12T00:00:00Z")
    assert [(r["at"], r["step"]) for r in log.sent()] == [
        ("2026-01-05T09:00:00Z", "hello"),
        ("2026-01-06T10:00:00Z", "hello"),  # goto 1
        ("2026-01-07T10:00:00Z", "hello"),  # goto 2
        ("2026-01-08T10:00:00Z", "bye"),  # the third goto is passed over
    ]
    skipped = log.of("step.skipped", contact="lo@x.test")
    assert [(r["at"], r["step"], r["reason"]) for r in skipped] == [
        ("2026-01-08T10:00:00Z", "again", "max_loops")
    ]
    assert log.enrollment("lo@x.test", "loop")["status"] == "finished"


def test_s8_wait_until_goes_on_as_soon_as_the_condition_holds(run_sim: RunSim) -> None:
    """S8: `wait_until` waits until the condition holds: a tag assigned by an event a day later
    releases it at that moment (not at the timeout); a contact who already matches does not wait."""
    events = [
        _enroll("2026-01-05T09:00:00Z", "wa@x.test", "waiting"),
        {"at": "2026-01-05T09:30:00Z", "type": "tag.assigned", "contact": "now@x.test", "tag": "buyer"},
        _enroll("2026-01-05T09:45:00Z", "now@x.test", "waiting"),
        {"at": "2026-01-06T12:34:00Z", "type": "tag.assigned", "contact": "wa@x.test", "tag": "buyer"},
    ]
    log = run_sim(RULES, events, "2026-01-12T00:00:00Z")
    assert [(r["at"], r["contact"], r["step"]) for r in log.sent()] == [
        ("2026-01-05T09:45:00Z", "now@x.test", "next"),
        ("2026-01-06T12:34:00Z", "wa@x.test", "next"),
    ]
    assert log.of("step.executed", contact="wa@x.test", step="wait-buy")[0]["at"] == "2026-01-06T12:34:00Z"


def test_s8_wait_until_goes_on_when_the_timeout_passes(run_sim: RunSim) -> None:
    """S8: `wait_until` with `timeout: {days: 3}` goes on 3 days after it was reached when the
    condition never holds; an unrelated change of the contact does not release it."""
    events = [
        _enroll("2026-01-05T09:00:00Z", "wa@x.test", "waiting"),
        {"at": "2026-01-06T09:00:00Z", "type": "tag.assigned", "contact": "wa@x.test", "tag": "vip"},
    ]
    log = run_sim(RULES, events, "2026-01-12T00:00:00Z")
    assert [(r["at"], r["step"]) for r in log.sent()] == [("2026-01-08T09:00:00Z", "next")]
    assert log.enrollment("wa@x.test", "waiting")["status"] == "finished"


# -- S8 fulfillment, postcard, sms; S11 blocked and retried -------------------------------------------

MAIL = (
    HEAD
    + """\
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
templates:
  card: {text: "Thanks, {{ contact.first_name }}!"}
  ping: {sms: "Hi {{ contact.first_name }}, starts in 1h"}
sequences:
  - id: kit
    steps:
      - {id: kit, type: fulfillment, list: welcome-kit}
  - id: cards
    steps:
      - {id: card, type: postcard, template: card}
  - id: texts
    steps:
      - {id: text, type: sms, template: ping, from: "+15550100"}
"""
)

ADDRESS = {
    "line1": "5 Elm St",
    "city": "Springfield",
    "region": "IL",
    "postal_code": "62701",
    "country": "US",
}


def test_s8_fulfillment_adds_the_contact_to_the_named_list(run_sim: RunSim) -> None:
    """S8: a `fulfillment` step adds the contact to the named fulfillment list (for export)."""
    events = [
        _enroll("2026-01-05T09:00:00Z", {"email": "fu@x.test", "first_name": "Fu"}, "kit"),
        _enroll("2026-01-05T10:00:00Z", "ga@x.test", "kit"),
    ]
    log = run_sim(MAIL, events, "2026-01-06T00:00:00Z")
    assert [(email, name) for email, name, _ in _fulfillments(log, "fulfillment")] == [
        ("fu@x.test", "welcome-kit"),
        ("ga@x.test", "welcome-kit"),
    ]
    assert [(r["at"], r["contact"], r["type"]) for r in log.of("step.executed", step="kit")] == [
        ("2026-01-05T09:00:00Z", "fu@x.test", "fulfillment"),
        ("2026-01-05T10:00:00Z", "ga@x.test", "fulfillment"),
    ]


def test_s8_postcard_queues_a_print_job_with_the_postal_address(run_sim: RunSim) -> None:
    """S8: a `postcard` step queues a print job with the contact's postal address and the rendered
    template; nothing is emailed."""
    contact = {"email": "po@x.test", "first_name": "Po", "address": ADDRESS}
    log = run_sim(MAIL, [_enroll("2026-01-05T09:00:00Z", contact, "cards")], "2026-01-06T00:00:00Z")
    assert _fulfillments(log, "postcard") == [
        ("po@x.test", "card", {"address": ADDRESS, "text": "Thanks, Po!"})
    ]
    assert log.of("step.executed", step="card")[0]["type"] == "postcard"
    assert log.sent() == []
    assert log.enrollment("po@x.test", "cards")["status"] == "finished"


def test_s8_s11_postcard_without_address_blocks_and_retries_when_the_contact_is_updated(
    run_sim: RunSim,
) -> None:
    """S8/S11: a postcard to a contact without a postal address blocks the enrollment
    (`blocked`, `missing_address`); updating the contact with an address retries it at once."""
    events = [
        _enroll("2026-01-05T09:00:00Z", {"email": "po@x.test", "first_name": "Po"}, "cards"),
        {
            "at": "2026-01-07T11:00:00Z",
            "type": "contact.created",
            "contact": {"email": "po@x.test", "address": ADDRESS},
        },
    ]
    log = run_sim(MAIL, events, "2026-01-08T00:00:00Z")
    statuses = log.of("enrollment.status", contact="po@x.test", sequence="cards")
    assert [(r["at"], r["status"], r.get("reason")) for r in statuses] == [
        ("2026-01-05T09:00:00Z", "active", None),
        ("2026-01-05T09:00:00Z", "blocked", "missing_address"),
        ("2026-01-07T11:00:00Z", "active", None),
        ("2026-01-07T11:00:00Z", "finished", None),
    ]
    assert _fulfillments(log, "postcard") == [
        ("po@x.test", "card", {"address": ADDRESS, "text": "Thanks, Po!"})
    ]


def test_s8_s11_sms_without_phone_blocks_and_retries_when_the_contact_gets_a_phone(
    run_sim: RunSim,
) -> None:
    """S8/S11: an `sms` step needs a phone number: without one the enrollment is `blocked`
    (`missing_phone`) and nothing is sent; when the contact is updated with a phone it retries at
    once and the SMS goes to that number."""
    events = [
        _enroll("2026-01-05T09:00:00Z", {"email": "sm@x.test", "first_name": "Sam"}, "texts"),
        {
            "at": "2026-01-06T14:00:00Z",
            "type": "contact.created",
            "contact": {"email": "sm@x.test", "phone": "+15555550123"},
        },
    ]
    log = run_sim(MAIL, events, "2026-01-08T00:00:00Z")
    assert log.statuses("sm@x.test", "texts") == [
        ("active", None),
        ("blocked", "missing_phone"),
        ("active", None),
        ("finished", None),
    ]
    assert log.of("enrollment.status", status="blocked")[0]["at"] == "2026-01-05T09:00:00Z"
    sent = [{k: v for k, v in r.items() if k not in ("kind", "subject")} for r in log.sent()]
    assert sent == [
        {
            "at": "2026-01-06T14:00:00Z",
            "channel": "sms",
            "contact": "sm@x.test",
            "to": "+15555550123",
            "sequence": "texts",
            "step": "text",
            "template": "ping",
            "mailbox": "+15550100",
        }
    ]


def test_s11_blocked_sms_retries_on_admin_contact_update(run_sim: RunSim) -> None:
    """S11: an operator's `admin.contact.update` giving the phone retries the blocked SMS at once."""
    events = [
        _enroll("2026-01-05T09:00:00Z", {"email": "sm@x.test", "first_name": "Sam"}, "texts"),
        {
            "at": "2026-01-06T14:00:00Z",
            "type": "admin.contact.update",
            "contact": {"email": "sm@x.test", "phone": "+15555550123"},
        },
    ]
    log = run_sim(MAIL, events, "2026-01-08T00:00:00Z")
    assert [(r["at"], r["channel"], r["to"]) for r in log.sent()] == [
        ("2026-01-06T14:00:00Z", "sms", "+15555550123")
    ]
    assert log.enrollment("sm@x.test", "texts")["status"] == "finished"


def test_s11_blocked_sms_does_not_retry_on_its_own(run_sim: RunSim) -> None:
    """S11: a blocked enrollment waits for the contact to change: time passing sends nothing."""
    log = run_sim(MAIL, [_enroll("2026-01-05T09:00:00Z", "sm@x.test", "texts")], "2026-02-05T00:00:00Z")
    assert log.sent() == []
    state = log.enrollment("sm@x.test", "texts")
    assert (state["status"], state["reason"]) == ("blocked", "missing_phone")


# -- S9 split tests ---------------------------------------------------------------------------------

SPLIT = (
    HEAD
    + """\
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
templates:
  offer-a: {subject: "Offer A", text: "A"}
  offer-b: {subject: "Offer B", text: "B"}
sequences:
  - id: offer
    steps:
      - {id: pitch, type: email, variants: [{template: offer-a, weight: 3}, {template: offer-b, weight: 1}]}
"""
)


def test_s9_split_test_variant_is_deterministic_and_logged(run_sim: RunSim) -> None:
    """S9: the variant is chosen deterministically from the contact and the step: a contact who goes
    through the step again gets the same arm; the log carries `variant` and the arm's template."""
    contacts = [f"c{n}@x.test" for n in range(20)]
    events: list[dict[str, Any]] = []
    for contact in contacts:
        events.append(_enroll("2026-01-05T09:00:00Z", contact, "offer"))
    for contact in contacts:  # close (finished stays open, S13) and enter again: reenroll always
        events.append(
            {"at": "2026-01-06T09:00:00Z", "type": "admin.unenroll", "contact": contact, "sequence": "offer"}
        )
        events.append(_enroll("2026-01-06T09:00:00Z", contact, "offer"))
    log = run_sim(SPLIT, events, "2026-01-07T00:00:00Z")
    sent = log.sent(step="pitch")
    assert len(sent) == 40
    for record in sent:
        assert record["variant"] in ("offer-a", "offer-b")
        assert record["template"] == record["variant"]
        assert record["subject"] == {"offer-a": "Offer A", "offer-b": "Offer B"}[record["variant"]]
    for contact in contacts:
        arms = [(r["at"], r["variant"]) for r in sent if r["contact"] == contact]
        assert [at for at, _ in arms] == ["2026-01-05T09:00:00Z", "2026-01-06T09:00:00Z"]
        assert arms[0][1] == arms[1][1], (contact, arms)
    assert {r["variant"] for r in sent} == {"offer-a", "offer-b"}


def test_s9_split_test_arms_follow_their_weights(run_sim: RunSim) -> None:
    """S9: over 200 contacts a 3:1 split gives both arms, roughly 150 and 50."""
    events = [_enroll("2026-01-05T09:00:00Z", f"c{n}@x.test", "offer") for n in range(200)]
    log = run_sim(SPLIT, events, "2026-01-06T00:00:00Z")
    arms = Counter(r["variant"] for r in log.sent(step="pitch"))
    assert sum(arms.values()) == 200
    assert 125 <= arms["offer-a"] <= 175, arms
    assert 25 <= arms["offer-b"] <= 75, arms


# -- S10 routing ------------------------------------------------------------------------------------

ROUTING = (
    HEAD
    + """\
mailboxes:
  - {id: main, from: "Main <main@shop.test>", default: true}
  - {id: bob, from: "Bob <bob@shop.test>"}
  - {id: seqbox, from: "Seq <seq@shop.test>"}
  - {id: stepbox, from: "Step <step@shop.test>"}
templates:
  hello: {subject: "Hello", text: "Hi"}
sequences:
  - id: routed
    mailbox: seqbox
    steps:
      - {id: own, type: email, template: hello, mailbox: stepbox}
      - {id: inherited, type: email, template: hello}
  - id: plain
    steps:
      - {id: only, type: email, template: hello}
"""
)


def test_s10_routing_step_then_sequence_then_owner_then_workspace_default(run_sim: RunSim) -> None:
    """S10: an email step sends from its own `mailbox`, else the sequence's, else the contact's
    owner's (the mailbox named after the owner), else the workspace default."""
    bob_owned = {"email": "o@x.test", "owner": "bob"}
    events = [
        _enroll("2026-01-05T09:00:00Z", bob_owned, "routed"),
        _enroll("2026-01-05T09:00:00Z", "o@x.test", "plain"),
        _enroll("2026-01-05T09:00:00Z", "n@x.test", "plain"),
        _enroll("2026-01-05T09:00:00Z", {"email": "z@x.test", "owner": "zed"}, "plain"),
    ]
    log = run_sim(ROUTING, events, "2026-01-06T00:00:00Z")
    assert [(r["contact"], r["sequence"], r["step"], r["mailbox"]) for r in log.sent()] == [
        ("o@x.test", "routed", "own", "stepbox"),
        ("o@x.test", "routed", "inherited", "seqbox"),
        ("o@x.test", "plain", "only", "bob"),
        ("n@x.test", "plain", "only", "main"),
        ("z@x.test", "plain", "only", "main"),  # an owner without a mailbox falls back to the default
    ]
    assert log.of("not_enrolled") == []


NO_DEFAULT = (
    HEAD
    + """\
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>"}
  - {id: bob, from: "Bob <bob@shop.test>"}
templates:
  hello: {subject: "Hello", text: "Hi"}
sequences:
  - id: plain
    steps:
      - {id: only, type: email, template: hello}
  - id: fixed
    steps:
      - {id: only, type: email, template: hello, mailbox: bob}
"""
)


def test_s10_a_contact_who_cannot_be_routed_is_not_enrolled_missing_routing(run_sim: RunSim) -> None:
    """S10: with two mailboxes and no default, a contact without an owner has no mailbox for an email
    step without one: `not_enrolled`, `missing_routing`, and nothing is sent. A contact whose owner
    has a mailbox, or a step with its own mailbox, is routed."""
    events = [
        _enroll("2026-01-05T09:00:00Z", "nobody@x.test", "plain"),
        _enroll("2026-01-05T09:00:00Z", {"email": "owned@x.test", "owner": "ann"}, "plain"),
        _enroll("2026-01-05T09:00:00Z", "nobody@x.test", "fixed"),
    ]
    log = run_sim(NO_DEFAULT, events, "2026-01-06T00:00:00Z")
    refused = [(r["at"], r["contact"], r["sequence"], r["reason"]) for r in log.of("not_enrolled")]
    assert refused == [("2026-01-05T09:00:00Z", "nobody@x.test", "plain", "missing_routing")]
    assert [(r["contact"], r["sequence"], r["mailbox"]) for r in log.sent()] == [
        ("owned@x.test", "plain", "ann"),
        ("nobody@x.test", "fixed", "bob"),
    ]
    assert log.statuses("nobody@x.test", "plain") == []


# -- D8 mailbox pools (and D4 caps) ----------------------------------------------------------------

POOL = (
    HEAD
    + """\
mailboxes:
  - {id: a, from: "A <a@shop.test>", daily_cap: 3, default: true}
  - {id: b, from: "B <b@shop.test>", daily_cap: 5}
templates:
  hello: {subject: "Hello", text: "Hi"}
sequences:
  - id: pooled
    mailbox: [a, b]
    steps:
      - {id: one, type: email, template: hello}
      - {id: two, type: email, template: hello, after: {days: 1}}
  - id: direct
    mailbox: b
    steps:
      - {id: only, type: email, template: hello}
"""
)


def test_d8_pool_gives_the_mailbox_with_most_capacity_left_and_keeps_it(run_sim: RunSim) -> None:
    """D8: each enrollment is given the pool's mailbox with the most capacity left *that day* and
    keeps it to the end: the next day, after `b` has been used by another sequence, `c1` still sends
    from `b` while a new contact is given `a`, which now has more left."""
    events = [
        _enroll("2026-01-05T09:00:00Z", "c1@x.test", "pooled"),  # a 3 left, b 5 left -> b
        # the next day b sends 4 for another sequence: b has 1 left, a has 3
        *(_enroll("2026-01-06T08:00:00Z", f"d{n}@x.test", "direct") for n in range(4)),
        _enroll("2026-01-06T09:00:00Z", "c2@x.test", "pooled"),  # a 3 left, b 1 left -> a
    ]
    log = run_sim(POOL, events, "2026-01-08T00:00:00Z")
    pooled = [(r["at"], r["contact"], r["step"], r["mailbox"]) for r in log.sent(sequence="pooled")]
    assert pooled == [
        ("2026-01-05T09:00:00Z", "c1@x.test", "one", "b"),
        ("2026-01-06T09:00:00Z", "c2@x.test", "one", "a"),
        ("2026-01-06T10:00:00Z", "c1@x.test", "two", "b"),  # kept, though a has 2 left and b 1
        ("2026-01-07T10:00:00Z", "c2@x.test", "two", "a"),
    ]


def test_d8_pool_spreads_one_moment_by_capacity_left(run_sim: RunSim) -> None:
    """D8: enrollments arriving together are spread by the capacity left after each send (ties go
    to either mailbox, but never to one with less left)."""
    events = [_enroll("2026-01-05T09:00:00Z", f"c{n}@x.test", "pooled") for n in range(1, 7)]
    log = run_sim(POOL, events, "2026-01-05T12:00:00Z")
    used = Counter(r["mailbox"] for r in log.sent(sequence="pooled"))
    # 6 sends from a pool with a=3, b=5: taking the fuller one each time leaves 1 each at the end
    assert used == Counter({"b": 4, "a": 2})


CAPPED_POOL = (
    HEAD
    + """\
mailboxes:
  - {id: a, from: "A <a@shop.test>", daily_cap: 1, default: true}
  - {id: b, from: "B <b@shop.test>", daily_cap: 1}
templates:
  hello: {subject: "Hello", text: "Hi"}
sequences:
  - id: pooled
    mailbox: [a, b]
    steps:
      - {id: one, type: email, template: hello}
"""
)


def test_d8_d4_when_every_mailbox_of_the_pool_is_at_its_cap_the_step_waits_for_the_next_day(
    run_sim: RunSim,
) -> None:
    """D8/D4: when every mailbox of the pool has reached its daily cap, the step waits (`queued`,
    `daily_cap`) and is sent the next day, from a mailbox of the pool."""
    events = [_enroll("2026-01-05T09:00:00Z", f"c{n}@x.test", "pooled") for n in range(1, 4)]
    log = run_sim(CAPPED_POOL, events, "2026-01-08T00:00:00Z")
    sent = [(r["at"], r["contact"], r["mailbox"]) for r in log.sent()]
    assert sent[:2] == [
        ("2026-01-05T09:00:00Z", "c1@x.test", "a"),
        ("2026-01-05T09:00:00Z", "c2@x.test", "b"),
    ]
    assert len(sent) == 3
    assert sent[2][1] == "c3@x.test" and sent[2][2] in ("a", "b")
    assert sent[2][0] == "2026-01-06T00:00:00Z"  # the mailboxes' next (UTC) day
    assert log.statuses("c3@x.test", "pooled") == [
        ("active", None),
        ("queued", "daily_cap"),
        ("active", None),
        ("finished", None),
    ]
    assert (
        log.of("enrollment.status", contact="c3@x.test", status="queued")[0]["at"] == "2026-01-05T09:00:00Z"
    )
