"""Every condition of SPEC §3 in an automation's `if:`, through the real engine (``run_sim``).

One automation, ``when: {event: tag.assigned, tag: go}``, ``if: CONDITION``, ``then: add_tag hit``.
For each condition the YES contact's history makes it true and the NO contact's makes it false
(usually a near miss: another product, a partial instead of a full refund, a request instead of a
cancellation). Then both get the tag `go`: the automation fires for YES only, and the log says why
it did not fire for NO (`automation.skipped` with the reason `explain` tells, X5).

tests/unit/test_conditions.py checks every operator and edge of the evaluator; this file checks
that the engine records each fact a condition reads and evaluates `if:` on the contact as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.integration.engine.conftest import Log, RunSim
from tests.integration.engine.test_catalog_triggers import (
    DAY,
    NO,
    YES,
    Ev,
    enroll,
    events,
    on_tag,
    sub,
    tag,
    workspace,
)

GO = ("tag.assigned", {"tag": "go"})


@dataclass(frozen=True)
class Case:
    name: str
    condition: dict[str, Any]
    yes: list[Ev]
    no: list[Ev]
    helpers: list[dict[str, Any]] = field(default_factory=list)  # more automations the case needs
    yes_contact: dict[str, Any] = field(default_factory=dict)  # contact attributes, set by the first event
    no_contact: dict[str, Any] = field(default_factory=dict)


def ev(kind: str, **fields: Any) -> Ev:
    return (kind, fields)


def _simple(condition: str, event: str, key: str, value: str, other: str) -> Case:
    """`{condition: value}` holds after an `event` with `key: value`, not after one with `key: other`."""
    return Case(condition, {condition: value}, [ev(event, **{key: value})], [ev(event, **{key: other})])


CASES = [
    Case("on_list", {"on_list": "news"}, [sub("news")], [sub("news"), ev("list.unsubscribed", list="news")]),
    Case("has_tag", {"has_tag": "vip"}, [tag("vip")], [tag("vip"), ev("tag.removed", tag="vip")]),
    Case(
        "field",
        {"field": {"key": "plan", "op": "eq", "value": "pro"}},
        [],
        [],
        yes_contact={"fields": {"plan": "pro"}},
        no_contact={"fields": {"plan": "basic"}},
    ),
    Case(
        "source", {"source": "ads"}, [], [], yes_contact={"source": "Ads"}, no_contact={"source": "organic"}
    ),
    Case("email_domain", {"email_domain": ["x.test"]}, [], []),  # YES is at x.test, NO at y.test
    Case("lead_status", {"lead_status": "active"}, [sub("news")], []),  # L1: on a list → active
    _simple("filled_form", "form.submitted", "form", "optin", "other-form"),
    Case(
        "in_sequence",
        {"in_sequence": "drip"},
        [enroll("drip")],
        [enroll("drip"), ev("admin.unenroll", sequence="drip")],
    ),
    # other-seq has one step and finishes at once; drip sends its second step an hour later
    Case("finished_sequence", {"finished_sequence": "other-seq"}, [enroll("other-seq")], [enroll("drip")]),
    Case(
        "reached_step",
        {"reached_step": {"sequence": "drip", "step": "one"}},
        [enroll("drip")],
        [enroll("other-seq")],  # its own step `one`, of another sequence
    ),
    Case(
        "opened_email",
        {"opened_email": {"sequence": "drip", "step": "one"}},
        [enroll("drip"), ev("email.opened")],
        [enroll("other-seq"), ev("email.opened")],
    ),
    _simple("clicked_link", "link.clicked", "link", "offer", "other-link"),
    Case(
        "clicked_split_link",
        {"clicked_split_link": "offer"},
        [ev("split_link.clicked", link="offer", variant="a")],
        [ev("link.clicked", link="offer")],  # a plain click is not a split-link click
    ),
    _simple("visited_page", "page.visited", "page", "sales", "other-page"),
    _simple("bought_product", "product.purchased", "product", "course", "coaching"),
    Case(
        "refunded_product",
        {"refunded_product": "course"},
        [ev("product.purchased", product="course"), ev("product.refunded", product="course")],
        [
            ev("product.purchased", product="course"),
            ev("product.partially_refunded", product="course", amount=5),
        ],
    ),
    Case(
        "partially_refunded_product",
        {"partially_refunded_product": "course"},
        [
            ev("product.purchased", product="course"),
            ev("product.partially_refunded", product="course", amount=5),
        ],
        [ev("product.purchased", product="course"), ev("product.refunded", product="course")],
    ),
    Case(
        "canceled_subscription",
        {"canceled_subscription": "course"},
        [ev("product.purchased", product="course"), ev("subscription.canceled", product="course")],
        [
            ev("product.purchased", product="course"),
            ev("subscription.cancellation_requested", product="course"),
        ],
    ),
    Case(
        "active_subscription",
        {"active_subscription": "course"},
        [
            ev("product.purchased", product="course"),
            ev("subscription.cancellation_requested", product="course"),
        ],
        [ev("product.purchased", product="course"), ev("subscription.canceled", product="course")],
    ),
    _simple("played_video", "video.played", "video", "intro", "outro"),
    Case(
        "completed_video",
        {"completed_video": "intro"},
        [ev("video.completed", video="intro")],
        [ev("video.played", video="intro")],
    ),
    Case(
        "score",
        {"score": {"op": "gte", "value": 10}},
        [tag("vip")],
        [tag("other-tag")],
        helpers=[on_tag("vip", {"give_points": 10}), on_tag("other-tag", {"give_points": 9})],
    ),
    Case(
        "has_membership",
        {"has_membership": {"membership": "academy", "level": "pro"}},
        [ev("membership.granted", membership="academy", level="pro")],
        [
            ev("membership.granted", membership="academy", level="pro"),
            ev("membership.revoked", membership="academy"),
        ],
    ),
    Case(
        "completed_level",
        {"completed_level": {"membership": "academy", "level": "basic"}},
        [ev("membership.level_completed", membership="academy", level="basic")],
        [ev("membership.level_completed", membership="academy", level="pro")],
    ),
    *(
        _simple(f"webinar_{what}", f"webinar.{what}", "webinar", "launch", "other-webinar")
        for what in ("registered", "attended", "missed", "watched_fully", "left_early")
    ),
    Case(
        "calendar_active",
        {"calendar_active": "call"},
        [ev("calendar.registered", calendar="call")],
        [ev("calendar.registered", calendar="call"), ev("calendar.canceled", calendar="call")],
    ),
    Case(
        "calendar_completed",
        {"calendar_completed": "call"},
        [ev("calendar.registered", calendar="call"), ev("calendar.completed", calendar="call")],
        [ev("calendar.registered", calendar="call")],
    ),
    Case(
        "calendar_canceled",
        {"calendar_canceled": "call"},
        [ev("calendar.registered", calendar="call"), ev("calendar.canceled", calendar="call")],
        [ev("calendar.registered", calendar="call"), ev("calendar.completed", calendar="call")],
    ),
    _simple("completed_survey", "survey.completed", "survey", "quiz", "other-quiz"),
    Case(
        "survey_answer",
        {"survey_answer": {"survey": "quiz", "question": "q1", "is": "yes"}},
        [
            ev("survey.completed", survey="quiz", answers={"q1": "no"}),
            ev("survey.completed", survey="quiz", answers={"q1": "yes"}),
        ],
        # the latest completion counts: the contact changed their mind
        [
            ev("survey.completed", survey="quiz", answers={"q1": "yes"}),
            ev("survey.completed", survey="quiz", answers={"q1": "no"}),
        ],
    ),
    Case(
        "survey_score",
        {"survey_score": {"survey": "quiz", "op": "gte", "value": 7}},
        [ev("survey.completed", survey="quiz", answers={}, score=8)],
        [ev("survey.completed", survey="quiz", answers={}, score=5)],
    ),
    Case(
        "is_affiliate",
        {"is_affiliate": True},
        [ev("affiliate.joined", product="course")],
        [ev("jv_broker.joined", product="course")],
    ),
    _simple("is_jv_broker", "jv_broker.joined", "product", "course", "coaching"),
    Case(
        "engagement",
        {"engagement": {"op": "gte", "value": "low"}},
        [enroll("drip"), ev("email.opened")],
        [enroll("drip"), ev("email.delivered")],  # delivered is not engagement
    ),
    Case("all", {"all": [{"has_tag": "vip"}, {"on_list": "news"}]}, [tag("vip"), sub("news")], [tag("vip")]),
    Case("any", {"any": [{"has_tag": "vip"}, {"on_list": "news"}]}, [sub("news")], [tag("other-tag")]),
    Case("not", {"not": {"has_tag": "vip"}}, [tag("other-tag")], [tag("vip")]),
]


def _run(run_sim: RunSim, case: Case) -> Log:
    automation = {
        "id": "hit",
        "when": {"event": "tag.assigned", "tag": "go"},
        "if": case.condition,
        "then": [{"add_tag": "hit"}],
    }
    first = [("contact.created", {"contact": {"email": YES, **case.yes_contact}})]
    first_no = [("contact.created", {"contact": {"email": NO, **case.no_contact}})]
    return run_sim(
        workspace(automation, *case.helpers),
        events({YES: first + case.yes + [GO], NO: first_no + case.no + [GO]}),
        f"{DAY}T09:50:00Z",
    )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_condition_decides_whether_an_automation_fires(run_sim: RunSim, case: Case) -> None:
    """SPEC §3 conditions, in an automation's `if` (§2): true for YES, so the automation fires and
    tags YES; false for NO, so it does not, and the log says why (X5)."""
    log = _run(run_sim, case)
    assert [r["contact"] for r in log.of("automation.fired", automation="hit")] == [YES], log.dump()
    assert [r["contact"] for r in log.of("action.applied", action="add_tag", value="hit")] == [YES]
    skipped = log.of("automation.skipped", automation="hit")
    assert [r["contact"] for r in skipped] == [NO]
    assert skipped[0]["reason"] and skipped[0]["reason"] != "once"


def test_every_condition_of_the_spec_has_a_case() -> None:
    """SPEC §3: the table covers every condition the workspace file accepts."""
    from dripflow.core.conditions_model import CONDITION_CLASSES

    kinds = {cls.kind for cls in CONDITION_CLASSES}
    assert sorted(case.name for case in CASES) == sorted(kinds)
