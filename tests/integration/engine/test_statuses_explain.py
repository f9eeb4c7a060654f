"""Every enrollment status and reason of SPEC §6 the engine produces, made to happen through X2
events on both stores, read from the X3 log, and told back by `explain` (X5) in a sentence that
names the reason, at the moment it happened.

Dates: 2026-01-05 is a Monday; the workspaces are in UTC so log times read as wall times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from dripflow.explain import explain_contact
from dripflow.store.database import transaction
from tests.integration.engine.conftest import Log, RunSim

HEAD = """\
workspace: {id: shop, name: Shop, timezone: UTC, default_send_time: "10:00", physical_address: "1 Main St"}
"""

WS = (
    HEAD
    + """\
ruleset:
  exclusions:
    - {name: competitors, if: {email_domain: [rival.test]}}
    - {name: do-not-contact, if: {has_tag: dnc}}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
  - {id: tiny, from: "Tiny <tiny@shop.test>", daily_cap: 1}
schedules:
  - {id: office, days: [mon, tue, wed, thu, fri], hours: ["09:00-17:00"], excluded_dates: ["2026-01-07"]}
tags: [dnc]
catalog:
  products: [course]
templates:
  hello: {subject: "Hello", text: "Hi"}
  named: {subject: "Hello {{ contact.first_name }}", text: "Hi"}
  broken: {subject: "Odds", text: "{{ 100 // contact.score }} to one"}
  ping: {sms: "Ping"}
  card: {text: "Card"}
sequences:
  - id: drip
    reenroll: never
    stop_on: [replied, {bought_product: course}]
    steps:
      - {id: one, type: email, template: hello}
      - {id: two, type: email, template: hello, after: {days: 1}}
  - id: short
    steps:
      - {id: only, type: email, template: hello}
  - id: cool
    reenroll: 30d
    steps:
      - {id: only, type: email, template: hello, after: {days: 5}}
  - id: office
    schedule: office
    steps:
      - {id: only, type: email, template: hello}
  - id: capped
    mailbox: tiny
    steps:
      - {id: only, type: email, template: hello}
  - id: drafty
    status: draft
    steps:
      - {id: only, type: email, template: hello}
  - id: named
    steps:
      - {id: only, type: email, template: named}
  - id: broken
    steps:
      - {id: only, type: email, template: broken}
  - id: texts
    steps:
      - {id: text, type: sms, template: ping}
  - id: cards
    steps:
      - {id: card, type: postcard, template: card}
  - id: closing
    steps:
      - {id: only, type: email, template: hello}
      - {id: bye, type: rule, after: {days: 1}, then: [{unsubscribe_sequence: closing}]}
"""
)

# D7: at most one marketing email per contact in any rolling day
FREQUENCY = (
    HEAD
    + """\
ruleset:
  frequency: {max: 1, per: 1d}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
templates:
  hello: {subject: "Hello", text: "Hi"}
sequences:
  - id: drip
    steps:
      - {id: one, type: email, template: hello}
      - {id: two, type: email, template: hello, after: {hours: 1}}
"""
)

# S3: one open, unfinished enrollment at a time
DENY = (
    HEAD
    + """\
ruleset:
  multi_sequence: deny
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
templates:
  hello: {subject: "Hello", text: "Hi"}
sequences:
  - id: first
    steps:
      - {id: one, type: email, template: hello}
      - {id: two, type: email, template: hello, after: {days: 3}}
  - id: second
    steps:
      - {id: one, type: email, template: hello}
"""
)

# S4 at send time: a contact who was engaged when enrolled has gone cold (no opens or clicks in
# 90 days) by the time the step is due. Nothing "happens" to the contact, so only the send-time
# check can catch it.
SUNSET = (
    HEAD
    + """\
ruleset:
  exclusions:
    - {name: sunset, if: {engagement: {op: eq, value: none}}}
mailboxes:
  - {id: ann, from: "Ann <ann@shop.test>", default: true}
templates:
  hello: {subject: "Hello", text: "Hi"}
sequences:
  - id: later
    steps:
      - {id: only, type: email, template: hello, after: {days: 100}}
"""
)

# S10: two mailboxes and no default: a contact without an owner cannot be routed
NO_ROUTE = (
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
"""
)

T0 = "2026-01-05T09:00:00Z"  # a Monday
T1 = "2026-01-05T11:00:00Z"
T2 = "2026-01-05T13:00:00Z"
UNTIL = "2026-01-20T00:00:00Z"


def _ev(at: str, event_type: str, contact: str | dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"at": at, "type": event_type, "contact": contact, **fields}


def _enroll(at: str, contact: str | dict[str, Any], sequence: str) -> dict[str, Any]:
    return _ev(at, "admin.enroll", contact, sequence=sequence)


def _explain(log: Log, contact: str) -> list[str]:
    with transaction(log.result.engine) as session:
        return explain_contact(session, log.result.workspace_id, contact)


def _assert_explained(log: Log, contact: str, at: str, words: tuple[str, ...]) -> list[str]:
    """X5: a sentence of the contact's explanation, dated `at`, names the reason (one of `words`)."""
    lines = _explain(log, contact)
    hits = [line for line in lines if line.startswith(f"{at}  ") and any(w in line.lower() for w in words)]
    assert hits, f"no line at {at} naming any of {words}:\n" + "\n".join(lines)
    return lines


# -- enrollment statuses (SPEC §6 table) -------------------------------------------------------------


@dataclass(frozen=True)
class StatusCase:
    workspace: str
    events: list[dict[str, Any]]
    contact: str
    sequence: str
    at: str  # when the status is logged
    status: str
    reason: str | None
    words: tuple[str, ...]  # what `explain` says at that moment (any of them, lower case)
    closed: bool = False  # the enrollment has left the sequence (S1: no longer open)
    extra: dict[str, Any] = field(default_factory=dict)


ANN = {"email": "ann@x.test", "first_name": "Ann"}

STATUS_CASES = {
    "s6-active": StatusCase(
        WS, [_enroll(T0, ANN, "drip")], "ann@x.test", "drip", T0, "active", None, ("entered",)
    ),
    "t6-queued-outside_schedule": StatusCase(
        WS,
        [_enroll("2026-01-10T12:00:00Z", ANN, "office")],  # a Saturday
        "ann@x.test",
        "office",
        "2026-01-10T12:00:00Z",
        "queued",
        "outside_schedule",
        ("outside_schedule", "send window"),
    ),
    "t6-queued-excluded_date": StatusCase(
        WS,
        [_enroll("2026-01-07T12:00:00Z", ANN, "office")],  # an excluded Wednesday, inside the hours
        "ann@x.test",
        "office",
        "2026-01-07T12:00:00Z",
        "queued",
        "excluded_date",
        ("excluded_date", "excluded date"),
    ),
    "d4-queued-daily_cap": StatusCase(
        WS,
        [_enroll(T0, "first@x.test", "capped"), _enroll(T0, ANN, "capped")],
        "ann@x.test",
        "capped",
        T0,
        "queued",
        "daily_cap",
        ("daily_cap", "daily cap"),
    ),
    "d7-queued-frequency_cap": StatusCase(
        FREQUENCY,
        [_enroll(T0, ANN, "drip")],
        "ann@x.test",
        "drip",
        "2026-01-05T10:00:00Z",
        "queued",
        "frequency_cap",
        ("frequency_cap", "frequency cap"),
    ),
    "s11-blocked-template_variable": StatusCase(
        WS,
        [_enroll(T0, "nameless@x.test", "named")],
        "nameless@x.test",
        "named",
        T0,
        "blocked",
        "template_variable:contact.first_name",
        ("contact.first_name",),
    ),
    "s8-s11-blocked-missing_phone": StatusCase(
        WS, [_enroll(T0, ANN, "texts")], "ann@x.test", "texts", T0, "blocked", "missing_phone", ("phone",)
    ),
    "s8-s11-blocked-missing_address": StatusCase(
        WS,
        [_enroll(T0, ANN, "cards")],
        "ann@x.test",
        "cards",
        T0,
        "blocked",
        "missing_address",
        ("address",),
    ),
    "s11-blocked-render_error": StatusCase(
        WS,
        [_enroll(T0, ANN, "broken")],  # score 0: the template divides by zero
        "ann@x.test",
        "broken",
        T0,
        "blocked",
        "render_error",
        ("render_error", "render error", "cannot be rendered"),
    ),
    "s13-finished": StatusCase(
        WS, [_enroll(T0, ANN, "short")], "ann@x.test", "short", T0, "finished", None, ("finished",)
    ),
    "s12-completed-replied": StatusCase(
        WS,
        [_enroll(T0, ANN, "drip"), _ev(T1, "email.replied", "ann@x.test")],
        "ann@x.test",
        "drip",
        T1,
        "completed",
        "replied",
        ("replied",),
        closed=True,
    ),
    "s12-completed-goal": StatusCase(
        WS,
        [_enroll(T0, ANN, "drip"), _ev(T1, "product.purchased", "ann@x.test", product="course")],
        "ann@x.test",
        "drip",
        T1,
        "completed",
        "goal",
        ("goal",),
        closed=True,
    ),
    "s13-completed-unsubscribed": StatusCase(
        WS,
        [_enroll(T0, ANN, "closing")],  # its last step is a rule: unsubscribe_sequence closing
        "ann@x.test",
        "closing",
        "2026-01-06T10:00:00Z",
        "completed",
        "unsubscribed",  # S13 + §6: the unsubscribe_sequence action closes it as completed
        ("completed", "unsubscribed"),
        closed=True,
    ),
    "s6-canceled-manual": StatusCase(
        WS,
        [_enroll(T0, ANN, "drip"), _ev(T1, "admin.unenroll", "ann@x.test", sequence="drip")],
        "ann@x.test",
        "drip",
        T1,
        "canceled",
        "manual",
        ("manual",),
        closed=True,
    ),
    "s4-canceled-excluded": StatusCase(
        WS,
        [_enroll(T0, ANN, "drip"), _ev(T1, "tag.assigned", "ann@x.test", tag="dnc")],
        "ann@x.test",
        "drip",
        T1,
        "canceled",
        "excluded",
        ("excluded", "exclusion"),
        closed=True,
    ),
    "s12-canceled-unsubscribed": StatusCase(
        WS,
        [_enroll(T0, ANN, "drip"), _ev(T1, "unsubscribed", "ann@x.test", scope="sequence", sequence="drip")],
        "ann@x.test",
        "drip",
        T1,
        "canceled",
        "unsubscribed",
        ("unsubscribed",),
        closed=True,
    ),
    "l1-canceled-complaint": StatusCase(
        WS,
        [_enroll(T0, ANN, "drip"), _ev(T1, "email.complained", "ann@x.test")],
        "ann@x.test",
        "drip",
        T1,
        "canceled",
        "complaint",
        ("complaint", "complained"),
        closed=True,
    ),
    "s4-excluded-rule_name": StatusCase(
        SUNSET,
        [_ev(T0, "email.opened", ANN), _enroll(T1, "ann@x.test", "later")],
        "ann@x.test",
        "later",
        "2026-04-15T10:00:00Z",  # 100 days on: the open is more than 90 days old
        "excluded",
        "sunset",
        ("sunset",),
        closed=True,
    ),
    "s12-bounced-hard_bounce": StatusCase(
        WS,
        [_enroll(T0, ANN, "drip"), _ev(T1, "email.bounced", "ann@x.test", kind="hard")],
        "ann@x.test",
        "drip",
        T1,
        "bounced",
        "hard_bounce",
        ("hard_bounce", "hard bounce", "bounced"),
        closed=True,
    ),
}


def _until(case: StatusCase) -> str:
    return "2026-05-01T00:00:00Z" if case.workspace is SUNSET else UNTIL


@pytest.mark.parametrize("case", list(STATUS_CASES.values()), ids=list(STATUS_CASES))
def test_s6_status_is_logged_and_explained(run_sim: RunSim, case: StatusCase) -> None:
    """SPEC §6 / X3 / X5: the status (with its reason) is logged when it happens (a closing one is
    the enrollment's last state), and `explain` names it in a sentence dated that moment."""
    log = run_sim(case.workspace, case.events, _until(case))
    records = log.of("enrollment.status", contact=case.contact, sequence=case.sequence, status=case.status)
    assert [(r["at"], r.get("reason")) for r in records][:1] == [(case.at, case.reason)], log.dump()
    if case.closed:  # a closing status is the last one, and the contact has left the sequence
        assert log.statuses(case.contact, case.sequence)[-1] == (case.status, case.reason)
        assert log.enrollment(case.contact, case.sequence)["status"] == case.status
    _assert_explained(log, case.contact, case.at, case.words)


def test_s6_draft_enrollment_is_logged_and_explained_as_in_the_draft(run_sim: RunSim) -> None:
    """§6 `draft`: a contact entered while the sequence is a draft has a `draft` enrollment: nothing
    is sent, it is still in the sequence (S1), and `explain` says so, not that it left."""
    log = run_sim(WS, [_enroll(T0, ANN, "drafty"), _enroll(T1, "ann@x.test", "drafty")], UNTIL)
    assert log.statuses("ann@x.test", "drafty") == [("draft", None)]
    assert log.of("enrollment.status", sequence="drafty")[0]["at"] == T0
    assert log.sent() == []
    assert log.enrollment("ann@x.test", "drafty")["status"] == "draft"
    assert [r["reason"] for r in log.of("not_enrolled")] == ["already_enrolled"]  # S1: draft is open
    lines = _assert_explained(log, "ann@x.test", T0, ("draft",))
    # X5: it did not leave, and what happens next is that it waits for the sequence to be activated
    left = [line for line in lines if "Left 'drafty'" in line]
    assert not left and "draft" in lines[-1], "\n".join(lines)


def test_s5_paused_enrollment_is_logged_and_explained_as_paused(run_sim: RunSim) -> None:
    """§6 `paused` (S5): pausing the sequence shows its enrollments `paused`; nothing is sent until
    it resumes, and `explain` tells that it is paused (not that the contact left)."""
    events = [_enroll(T0, ANN, "drip"), {"at": T1, "type": "admin.sequence.pause", "sequence": "drip"}]
    log = run_sim(WS, events, UNTIL)
    assert log.statuses("ann@x.test", "drip") == [("active", None), ("paused", None)]
    assert log.of("enrollment.status", status="paused")[0]["at"] == T1
    assert [r["step"] for r in log.sent()] == ["one"]
    lines = _assert_explained(log, "ann@x.test", T1, ("paused",))
    assert not [line for line in lines if "Left 'drip'" in line], "\n".join(lines)
    assert lines[-1] == "Next: 'drip' is paused; nothing is sent until it resumes (S5)."


def test_x3_the_action_is_logged_before_the_status_it_causes(run_sim: RunSim) -> None:
    """X3: records at one moment are ordered by cause: the rule step runs, its action
    `unsubscribe_sequence` is applied, and *then* the enrollment is `completed` (S13)."""
    log = run_sim(WS, [_enroll(T0, ANN, "closing")], UNTIL)
    at_close = [r for r in log.records if r["at"] == "2026-01-06T10:00:00Z"]
    assert [(r["kind"], r.get("action") or r.get("status") or r.get("type")) for r in at_close] == [
        ("step.executed", "rule"),
        ("action.applied", "unsubscribe_sequence"),
        ("enrollment.status", "completed"),
        ("contact.status", "inactive"),  # L1: in no sequence and on no list any more
    ]


def test_s6_active_explain_ends_with_the_next_step_and_when(run_sim: RunSim) -> None:
    """X5 for `active`: the story ends with what happens next and when (step two, a day later at
    default_send_time)."""
    log = run_sim(WS, [_enroll(T0, ANN, "drip")], "2026-01-05T12:00:00Z")
    lines = _explain(log, "ann@x.test")
    assert f"{T0}  Entered sequence 'drip' (by admin)." in lines
    assert lines[-1] == "Next: step 'two' of 'drip' is due at 2026-01-06T10:00:00Z."


def test_t6_queued_step_goes_when_the_window_opens(run_sim: RunSim) -> None:
    """T6: held steps are sent when they may be: Saturday → Monday 09:00; the excluded Wednesday →
    Thursday 09:00; each going back to `active` when sent."""
    events = [
        _enroll("2026-01-07T12:00:00Z", "wed@x.test", "office"),
        _enroll("2026-01-10T12:00:00Z", "sat@x.test", "office"),
    ]
    log = run_sim(WS, events, UNTIL)
    assert sorted((r["contact"], r["at"]) for r in log.sent()) == [
        ("sat@x.test", "2026-01-12T09:00:00Z"),
        ("wed@x.test", "2026-01-08T09:00:00Z"),
    ]
    assert log.statuses("wed@x.test", "office") == [
        ("active", None),
        ("queued", "excluded_date"),
        ("active", None),
        ("finished", None),
    ]


def test_d7_frequency_capped_step_goes_when_it_fits(run_sim: RunSim) -> None:
    """D7: with max 1 per 1d the second email (due an hour after the first) waits until the first
    is a day old."""
    log = run_sim(FREQUENCY, [_enroll(T0, ANN, "drip")], UNTIL)
    assert [(r["at"], r["step"]) for r in log.sent()] == [
        (T0, "one"),
        ("2026-01-06T09:00:00Z", "two"),
    ]


def test_s4_excluded_at_send_time_sends_nothing(run_sim: RunSim) -> None:
    """S4: an enrollment that matches an exclusion at send time becomes `excluded` (with the rule's
    name) and nothing is sent; while the contact was engaged it was enrolled normally."""
    events = [_ev(T0, "email.opened", ANN), _enroll(T1, "ann@x.test", "later")]
    log = run_sim(SUNSET, events, "2026-05-01T00:00:00Z")
    assert log.of("not_enrolled") == []
    assert log.statuses("ann@x.test", "later") == [("active", None), ("excluded", "sunset")]
    assert log.sent() == []


# -- not_enrolled reasons (SPEC §6) ------------------------------------------------------------------


@dataclass(frozen=True)
class RefusalCase:
    workspace: str
    events: list[dict[str, Any]]
    sequence: str
    reason: str
    words: tuple[str, ...]


ARCHIVED = {
    "id": "short",
    "status": "archived",
    "steps": [{"id": "only", "type": "email", "template": "hello"}],
}

REFUSAL_CASES = {
    "s1-already_enrolled": RefusalCase(
        WS, [_enroll(T0, ANN, "drip"), _enroll(T1, "ann@x.test", "drip")], "drip", "already_enrolled",
        ("already_enrolled", "already in"),
    ),
    "s2-reenroll_never": RefusalCase(
        WS,
        [
            _enroll(T0, ANN, "drip"),
            _ev("2026-01-05T10:00:00Z", "admin.unenroll", "ann@x.test", sequence="drip"),
            _enroll(T1, "ann@x.test", "drip"),
        ],
        "drip", "reenroll_never", ("reenroll_never", "reenroll never", "enter twice"),
    ),
    "s2-cooldown": RefusalCase(
        WS,
        [
            _enroll(T0, ANN, "cool"),
            _ev("2026-01-05T10:00:00Z", "admin.unenroll", "ann@x.test", sequence="cool"),
            _enroll(T1, "ann@x.test", "cool"),
        ],
        "cool", "cooldown", ("cooldown",),
    ),
    "s3-in_other_sequence": RefusalCase(
        DENY, [_enroll(T0, ANN, "first"), _enroll(T1, "ann@x.test", "second")], "second",
        "in_other_sequence", ("in_other_sequence", "another sequence"),
    ),
    "s4-excluded": RefusalCase(
        WS, [_ev(T0, "contact.created", "eve@rival.test"), _enroll(T1, "eve@rival.test", "drip")], "drip",
        "excluded", ("excluded", "exclusion"),
    ),
    "l2-blacklisted": RefusalCase(
        WS,
        [_ev(T0, "admin.contact.blacklist", ANN, reason="asked"), _enroll(T1, "ann@x.test", "drip")],
        "drip", "blacklisted", ("blacklisted",),
    ),
    "l3-unsubscribed": RefusalCase(
        WS, [_ev(T0, "unsubscribed", ANN), _enroll(T1, "ann@x.test", "drip")], "drip", "unsubscribed",
        ("unsubscribed",),
    ),
    "s10-missing_routing": RefusalCase(
        NO_ROUTE, [_ev(T0, "contact.created", ANN), _enroll(T1, "ann@x.test", "plain")], "plain",
        "missing_routing", ("missing_routing", "no mailbox"),
    ),
    "s6-sequence_archived": RefusalCase(
        WS,
        [
            _ev(T0, "contact.created", ANN),
            {"at": T0, "type": "admin.sequence.update", "sequence": ARCHIVED},
            _enroll(T1, "ann@x.test", "short"),
        ],
        "short", "sequence_archived", ("sequence_archived", "archived"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSAL_CASES.values()), ids=list(REFUSAL_CASES))
def test_s6_not_enrolled_reason_is_logged_and_explained(run_sim: RunSim, case: RefusalCase) -> None:
    """SPEC §6 `not_enrolled` reasons: the refusal is logged with its reason at the moment of the
    attempt, nothing new is opened, and `explain` names the reason in a sentence dated then."""
    log = run_sim(case.workspace, case.events, UNTIL)
    refusals = [
        (r["at"], r["contact"], r["sequence"], r["reason"])
        for r in log.of("not_enrolled", contact="ann@x.test")
        + log.of("not_enrolled", contact="eve@rival.test")
    ]
    contact = "eve@rival.test" if "eve@rival.test" in str(case.events) else "ann@x.test"
    assert refusals == [(T1, contact, case.sequence, case.reason)], log.dump()
    assert not [r for r in log.of("enrollment.status", sequence=case.sequence) if r["at"] == T1]
    _assert_explained(log, contact, T1, case.words)
