"""SPEC §3 rules A3 (a cascade always ends) and A4 (triggers are forward-only), end to end.

A3 through ``run_sim``: automations that would trigger each other forever, a chain deeper than the
bound, and the same automation reached twice in one cascade. A4 with the engine's production
entry points (``apply_workspace`` as ``dripflow apply`` does, ``ingest_events`` as ``dripflow
events ingest`` and ``POST /v1/events`` do, and the worker), because an automation can only be
added by re-applying the workspace; and through ``run_sim`` for a starting rule added by a live
``admin.sequence.update``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from dripflow.core.clock import VirtualClock
from dripflow.core.validate import load_workspace_text
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import ingest_events
from dripflow.engine.triggers import MAX_DEPTH
from dripflow.engine.worker import run_worker
from dripflow.explain import story
from dripflow.store.database import transaction
from dripflow.store.tables import JournalEntry
from dripflow.store.workspaces import apply_workspace
from tests.integration.engine.conftest import RunSim
from tests.integration.engine.test_catalog_triggers import DAY, NO, YES, enroll, events, sub, tag, workspace


def untag(name: str) -> tuple[str, dict[str, Any]]:
    return ("tag.removed", {"tag": name})


def when_tag(name: str, *then: dict[str, Any], automation: str | None = None) -> dict[str, Any]:
    return {
        "id": automation or f"on-{name}",
        "when": {"event": "tag.assigned", "tag": name},
        "then": list(then),
    }


# -- A3 ---------------------------------------------------------------------------------------------

PING_PONG = (
    when_tag("vip", {"remove_tag": "vip"}, {"add_tag": "other-tag"}, automation="ping"),
    when_tag("other-tag", {"remove_tag": "other-tag"}, {"add_tag": "vip"}, automation="pong"),
)


def test_a3_two_automations_that_trigger_each_other_forever_end_and_say_so(run_sim: RunSim) -> None:
    """A3: `ping` (vip → other-tag) and `pong` (other-tag → vip) would hand the contact back and forth
    forever. Each runs once for the originating event; when `ping` is reached again the log says it
    had already run for this event (explain: A3), and the engine goes on with the next event, where
    the same happens once more."""
    log = run_sim(
        workspace(*PING_PONG),
        events({YES: [tag("vip"), untag("vip"), tag("vip")]}),
        f"{DAY}T10:00:00Z",
    )
    story_of = [(r["at"][11:16], r["kind"], r["automation"]) for r in log.records if r.get("automation")]
    assert story_of == [
        ("09:00", "automation.fired", "ping"),
        ("09:00", "automation.fired", "pong"),
        ("09:00", "automation.skipped", "ping"),
        ("09:02", "automation.fired", "ping"),
        ("09:02", "automation.fired", "pong"),
        ("09:02", "automation.skipped", "ping"),
    ], log.dump()
    skipped = log.of("automation.skipped", automation="ping")
    assert {r["reason"] for r in skipped} == {"once"}
    assert story(skipped[:1], [])[0].endswith(
        "Automation 'ping' did not fire on tag.assigned: it had already run for this event (A3)."
    )
    # pong had the last word: the contact has vip again, and not other-tag
    assert [(r["action"], r["value"]) for r in log.of("action.applied", at=f"{DAY}T09:00:00Z")] == [
        ("remove_tag", "vip"),
        ("add_tag", "other-tag"),
        ("remove_tag", "other-tag"),
        ("add_tag", "vip"),
    ]


def test_a3_an_automation_that_feeds_itself_runs_once_per_originating_event(run_sim: RunSim) -> None:
    """A3: `grow` gives points whenever the contact is updated, and giving points updates the
    contact: it runs once per originating event and contact (here two updates, two points)."""
    grow = {"id": "grow", "when": {"event": "contact.updated"}, "then": [{"give_points": 1}]}
    log = run_sim(
        workspace(grow, when_tag("vip", {"set_field": {"key": "plan", "value": "pro"}})),
        events({YES: [tag("vip")], NO: [tag("vip")]}),
        f"{DAY}T10:00:00Z",
    )
    assert [r["contact"] for r in log.of("automation.fired", automation="grow")] == [YES, NO]
    assert [entry["score"] for entry in log.state()["contacts"]] == [1, 1]


def test_a3_a_cascade_deeper_than_the_bound_is_cut_and_logged_not_a_crash(run_sim: RunSim) -> None:
    """A3: the depth is bounded (default 10). A chain of twelve automations, each adding the tag the
    next one waits for, is cut after the tenth link: the log says so (`automation.cut`, and
    explain: A3), the rest of the chain does not run, and the engine goes on with later events."""
    links = [f"t{n}" for n in range(13)]
    chain = [when_tag(links[n], {"add_tag": links[n + 1]}, automation=f"link{n}") for n in range(12)]
    log = run_sim(
        workspace(*chain, tags=[*links, "hit", "vip"]),
        events({YES: [tag("t0")], NO: [tag("vip"), tag("t11")]}),
        f"{DAY}T10:00:00Z",
    )
    fired = [r["automation"] for r in log.of("automation.fired", contact=YES)]
    assert fired == [f"link{n}" for n in range(MAX_DEPTH + 1)]  # the events of depths 0 … 10
    cut = log.of("automation.cut")
    assert [(r["contact"], r["event"], r["depth"]) for r in cut] == [(YES, "tag.assigned", MAX_DEPTH + 1)]
    assert story(cut, [])[0] == f"{DAY}T09:00:00Z  A cascade was cut at depth 11 on tag.assigned (A3)."
    # a later, unrelated event is handled as usual: NO's t11 fires link11
    assert [r["automation"] for r in log.of("automation.fired", contact=NO)] == ["link11"]


AGAIN = {
    "id": "again",
    "when": {"event": "sequence.finished", "sequence": "once"},
    "then": [{"unsubscribe_sequence": "once"}, {"subscribe_sequence": "once"}],
}


def one_step_sequence(after_days: int) -> list[dict[str, Any]]:
    step = {"id": "one", "type": "email", "template": "hello", "after": {"days": after_days}}
    return [{"id": "once", "steps": [step]}]


def test_a3_a_loop_through_a_sequence_with_no_delay_ends_after_one_round(run_sim: RunSim) -> None:
    """A3: `again` puts the contact back into `once` whenever it finishes; the sequence's only step
    has no delay, so without the rule it would email the contact forever at one instant. The new
    enrollment's immediate step belongs to the cascade that made it (even though the scheduler runs
    it in a later pass), so `again` is not run twice for one originating event: one round, two
    emails, and the log says why it stopped."""
    ws = workspace(AGAIN, sequences=one_step_sequence(0))
    log = run_sim(ws, events({YES: [enroll("once")]}), f"{DAY}T10:00:00Z")
    assert len(log.of("message.sent")) == 2, log.dump()
    assert [r["kind"] for r in log.records if r.get("automation") == "again"] == [
        "automation.fired",
        "automation.skipped",
    ]
    assert log.of("automation.skipped", automation="again")[0]["reason"] == "once"


def test_a3_the_same_loop_with_a_delay_is_a_schedule_not_a_runaway(run_sim: RunSim) -> None:
    """A3: a step with a delay starts a cascade of its own, so the loop above with a day's delay
    re-enrolls the contact once a day, as its author asked."""
    ws = workspace(AGAIN, sequences=one_step_sequence(1))
    log = run_sim(ws, events({YES: [enroll("once")]}), "2026-01-09T12:00:00Z")
    sent_days = [r["at"][:10] for r in log.of("message.sent")]
    assert sent_days == ["2026-01-06", "2026-01-07", "2026-01-08", "2026-01-09"], log.dump()
    assert not log.of("automation.skipped")


def test_a3_an_automation_reached_twice_in_one_cascade_runs_once(run_sim: RunSim) -> None:
    """A3: at most once per originating event and contact, however often the cascade reaches the
    automation: tagging vip adds two more tags, and `count` (any tag) runs once for the three."""
    automations = [
        when_tag("vip", {"add_tag": "other-tag"}, {"add_tag": "pinged"}, automation="fan-out"),
        {"id": "count", "when": {"event": "tag.assigned"}, "then": [{"give_points": 1}]},
    ]
    log = run_sim(
        workspace(*automations), events({YES: [tag("vip")], NO: [tag("pinged")]}), f"{DAY}T10:00:00Z"
    )
    assert [(r["contact"], r["automation"]) for r in log.of("automation.fired")] == [
        (YES, "fan-out"),
        (YES, "count"),
        (NO, "count"),
    ]
    assert [(r["contact"], r["reason"]) for r in log.of("automation.skipped")] == [
        (YES, "once"),
        (YES, "once"),
    ]
    assert [entry["score"] for entry in log.state()["contacts"]] == [1, 1]


# -- A4 ---------------------------------------------------------------------------------------------

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
BUYERS = {
    "id": "buyers",
    "when": {"event": "product.purchased", "product": "course"},
    "then": [{"add_tag": "hit"}],
}


def _apply(engine: Engine, text: str, at: datetime) -> None:
    with transaction(engine) as session:
        apply_workspace(session, load_workspace_text(text, "shop.yaml"), now=at, actor="test")


def _ingest(engine: Engine, at: datetime, *items: dict[str, Any]) -> None:
    ingest_events(
        engine, "shop", [InputEvent(n, at, item) for n, item in enumerate(items, 1)], Path("in.jsonl")
    )


def _journal(engine: Engine, kind: str) -> list[dict[str, Any]]:
    with transaction(engine) as session:
        rows = session.scalars(select(JournalEntry.data).order_by(JournalEntry.id))
        return [dict(data) for data in rows if data["kind"] == kind]


def test_a4_an_automation_added_by_applying_the_workspace_does_not_fire_for_the_past(engine: Engine) -> None:
    """A4: `buyers` is added (re-applying the workspace) after `ann` bought the course. Nothing about
    ann fires — not at the apply, not when the worker runs, not when ann does something else —
    while `bob`, who buys after the automation exists, gets it."""
    _apply(engine, workspace(), START)
    purchase = {"type": "product.purchased", "product": "course"}
    _ingest(engine, START, {**purchase, "contact": "ann@x.test"})

    later = START + timedelta(hours=1)
    _apply(engine, workspace(BUYERS), later)
    run_worker(engine, VirtualClock(later), until_idle=True)
    _ingest(
        engine,
        later + timedelta(minutes=1),
        {"type": "page.visited", "contact": "ann@x.test", "page": "sales"},
    )
    _ingest(engine, later + timedelta(minutes=2), {**purchase, "contact": "bob@x.test"})
    run_worker(engine, VirtualClock(later + timedelta(minutes=2)), until_idle=True)

    assert [r["contact"] for r in _journal(engine, "automation.fired")] == ["bob@x.test"]
    assert [r["contact"] for r in _journal(engine, "action.applied")] == ["bob@x.test"]


def test_a4_a_backdated_event_does_not_fire_an_automation_added_after_it(engine: Engine) -> None:
    """A4, backdated: `buyers` is applied at 10:00; a purchase ingested afterwards but dated 09:00
    (before `buyers` existed) does not fire it, and the log and explain say why; a purchase dated
    10:05 does. Re-applying the workspace with `buyers` doing something else keeps its 10:00."""
    _apply(engine, workspace(), START)
    later = START + timedelta(hours=1)
    _apply(engine, workspace(BUYERS), later)
    changed = {**BUYERS, "then": [{"add_tag": "vip"}]}
    _apply(engine, workspace(changed), later + timedelta(minutes=30))
    purchase = {"type": "product.purchased", "product": "course"}
    _ingest(engine, START, {**purchase, "contact": "ann@x.test"})  # ingested now, dated 09:00
    _ingest(engine, later + timedelta(minutes=5), {**purchase, "contact": "bob@x.test"})

    assert [r["contact"] for r in _journal(engine, "automation.fired")] == ["bob@x.test"]
    skipped = _journal(engine, "automation.skipped")
    assert [(r["contact"], r["reason"]) for r in skipped] == [("ann@x.test", "created_later")]
    assert story([{**skipped[0], "at": "2026-01-05T09:00:00Z"}], [])[0].endswith(
        "Automation 'buyers' did not fire on product.purchased: it was added after this event happened (A4)."
    )


def test_a4_a_backdated_event_does_not_start_a_sequence_whose_start_rule_came_later(engine: Engine) -> None:
    """A4, backdated, for start rules: `other-seq` gets a `start_when` on joining `news` when the
    workspace is re-applied at 10:00 (its second version); a sign-up dated 09:00 but ingested
    afterwards does not enroll ann, one dated 10:05 enrolls bob. A later version that changes only
    the steps keeps the rule's 10:00."""
    plain = {"id": "other-seq", "steps": [{"id": "one", "type": "email", "template": "hello"}]}
    starting = {**plain, "start_when": [{"event": "list.subscribed", "list": "news"}]}
    reworded = {
        **starting,
        "steps": [{"id": "one", "type": "email", "template": "hello", "after": {"hours": 1}}],
    }
    _apply(engine, workspace(sequences=[plain]), START)
    later = START + timedelta(hours=1)
    _apply(engine, workspace(sequences=[starting]), later)
    _apply(engine, workspace(sequences=[reworded]), later + timedelta(minutes=2))
    _ingest(engine, START, {"type": "list.subscribed", "list": "news", "contact": "ann@x.test"})
    _ingest(
        engine,
        later + timedelta(minutes=5),
        {"type": "list.subscribed", "list": "news", "contact": "bob@x.test"},
    )
    assert [r["contact"] for r in _journal(engine, "enrollment.status")] == ["bob@x.test"]


def test_a4_a_starting_rule_added_by_a_live_edit_enrolls_only_later_subscribers(run_sim: RunSim) -> None:
    """A4 for starting rules: a live edit (`admin.sequence.update`) gives `other-seq` a `start_when`
    on joining `news`. YES joined before and is not enrolled, then or later; NO joins after and is."""
    edited = {
        "id": "other-seq",
        "start_when": [{"event": "list.subscribed", "list": "news"}],
        "steps": [{"id": "one", "type": "email", "template": "hello"}],
    }
    log = run_sim(
        workspace(),
        [
            *events({YES: [sub("news")]}),
            {"at": f"{DAY}T09:30:00Z", "type": "admin.sequence.update", "sequence": edited},
            *events({YES: [tag("vip")], NO: [sub("news")]}, start=f"{DAY}T09:31:00Z"),
        ],
        f"{DAY}T12:00:00Z",
    )
    assert [
        (r["contact"], r["at"]) for r in log.of("enrollment.status", sequence="other-seq", status="active")
    ] == [(NO, f"{DAY}T09:32:00Z")]
    assert [r["contact"] for r in log.sent(sequence="other-seq")] == [NO]


def test_a4_an_enrollment_trigger_added_later_ignores_earlier_enrollments(run_sim: RunSim) -> None:
    """A4 with an engine-made event: a live edit adds a `start_when` on `sequence.finished` of drip
    after YES finished drip; only NO, who finishes drip after the edit, is enrolled."""
    edited = {
        "id": "other-seq",
        "start_when": [{"event": "sequence.finished", "sequence": "drip"}],
        "steps": [{"id": "one", "type": "email", "template": "hello"}],
    }
    log = run_sim(
        workspace(),
        [
            *events({YES: [enroll("drip")]}),  # YES finishes drip at 10:00
            {"at": f"{DAY}T10:30:00Z", "type": "admin.sequence.update", "sequence": edited},
            *events({NO: [enroll("drip")]}, start=f"{DAY}T10:31:00Z"),  # NO finishes at 11:31
        ],
        f"{DAY}T13:00:00Z",
    )
    assert [
        (r["contact"], r["at"]) for r in log.of("enrollment.status", sequence="other-seq", status="active")
    ] == [(NO, f"{DAY}T11:31:00Z")]
