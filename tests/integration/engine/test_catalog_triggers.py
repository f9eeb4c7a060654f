"""Every trigger event of SPEC §3, through the real engine (``run_sim``, SQLite and PostgreSQL).

For each event type an automation ``when: {event: TYPE, <filter>: …}`` must fire for a contact
whose event matches its filter and not for one whose event carries another value. The outcome is
read the way a user reads it: the ``automation.fired`` lines of the log and the tag the
automation's action put on the contact (``action.applied``).

Events the engine causes itself (``sequence.*``, ``step.reached``, ``score.reached``) are caused
the way a user would cause them: an operator enrollment, a sequence running, an action.

The workspace and event helpers here are shared by the other ``test_catalog_*`` files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from tests.integration.engine.conftest import Log, RunSim

YES = "yes@x.test"
NO = "no@y.test"
DAY = "2026-01-05"  # a Monday; the workspace is in UTC, so log times are wall times

Ev = tuple[str, dict[str, Any]]  # (type, fields) of one X2 event, for the contact of its list


def workspace(*automations: dict[str, Any], **sections: Any) -> str:
    """A workspace declaring two of everything (a filter value and another one); ``sections`` adds
    or replaces top-level sections (``delivery``, ``tags``, ``templates``, ``sequences``)."""
    document: dict[str, Any] = {
        "workspace": {
            "id": "shop",
            "name": "Shop",
            "timezone": "UTC",
            "default_send_time": "10:00",
            "physical_address": "1 Main St",
        },
        "mailboxes": [{"id": "ann", "from": "Ann <ann@shop.test>", "default": True}],
        "fields": [{"key": "plan", "type": "text"}],
        "lists": ["news", "other-list"],
        "tags": ["hit", "go", "check", "vip", "other-tag", "pinged"],
        "catalog": {
            "products": ["course", "coaching"],
            "forms": ["optin", "other-form"],
            "pages": ["sales", "other-page"],
            "videos": ["intro", "outro"],
            "memberships": {"academy": ["basic", "pro"], "club": ["gold"]},
            "webinars": ["launch", "other-webinar"],
            "calendars": ["call", "other-call"],
            "surveys": ["quiz", "other-quiz"],
            "links": {"offer": "https://shop.test/offer", "other-link": "https://shop.test/x"},
        },
        "templates": {"hello": {"subject": "Hello", "text": "Hi"}},
        "sequences": [
            {
                "id": "drip",
                "steps": [
                    {"id": "one", "type": "email", "template": "hello"},
                    {"id": "two", "type": "email", "template": "hello", "after": {"hours": 1}},
                ],
            },
            {"id": "other-seq", "steps": [{"id": "one", "type": "email", "template": "hello"}]},
            {
                "id": "pair",
                "steps": [
                    {"id": "a", "type": "email", "template": "hello"},
                    {"id": "b", "type": "email", "template": "hello"},
                ],
            },
        ],
        "automations": list(automations),
        **sections,
    }
    return yaml.safe_dump(document, sort_keys=False)


def hit(when: dict[str, Any]) -> dict[str, Any]:
    """The automation under test: it tags whoever it fires for."""
    return {"id": "hit", "when": when, "then": [{"add_tag": "hit"}]}


def events(per_contact: dict[str, list[Ev]], start: str = f"{DAY}T09:00:00Z") -> list[dict[str, Any]]:
    """X2 events one minute apart from ``start``: the first contact's, then the next one's."""
    hour, minute = int(start[11:13]), int(start[14:16])
    out: list[dict[str, Any]] = []
    for contact, items in per_contact.items():
        for kind, fields in items:
            out.append(
                {"at": f"{start[:11]}{hour:02d}:{minute:02d}:00Z", "type": kind, "contact": contact, **fields}
            )
            minute += 1
            hour, minute = hour + minute // 60, minute % 60
    return out


def fired(log: Log, automation: str = "hit") -> list[tuple[str, str]]:
    return [(r["contact"], r["event"]) for r in log.of("automation.fired", automation=automation)]


def tagged_hit(log: Log) -> list[str]:
    return [r["contact"] for r in log.of("action.applied", action="add_tag", value="hit")]


@dataclass(frozen=True)
class Case:
    """``when`` must fire on the YES contact's events and not on the NO contact's."""

    when: dict[str, Any]
    yes: list[Ev]
    no: list[Ev]
    helpers: list[dict[str, Any]] = field(default_factory=list)  # more automations the case needs

    @property
    def id(self) -> str:
        return self.when["event"]


def sub(name: str) -> Ev:
    return ("list.subscribed", {"list": name})


def enroll(sequence: str) -> Ev:
    return ("admin.enroll", {"sequence": sequence})


def tag(name: str) -> Ev:
    return ("tag.assigned", {"tag": name})


def on_tag(name: str, *then: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"on-{name}", "when": {"event": "tag.assigned", "tag": name}, "then": list(then)}


MESSAGE_1 = "<enrollment.1.1.shop@shop.test>"  # the first email of the first enrollment (YES's)


def _simple(event: str, key: str, value: Any, other: Any, **extra: Any) -> Case:
    """An event of ``event`` with ``key: value`` for YES and ``key: other`` for NO."""
    return Case(
        {"event": event, key: value}, [(event, {key: value, **extra})], [(event, {key: other, **extra})]
    )


CASES = [
    Case(
        {"event": "contact.updated", "changed": "plan"},
        [
            ("contact.created", {}),
            ("contact.created", {"contact": {"email": YES, "fields": {"plan": "pro"}}}),
        ],
        [("contact.created", {}), ("contact.created", {"contact": {"email": NO, "first_name": "No"}})],
    ),
    Case({"event": "list.subscribed", "list": "news"}, [sub("news")], [sub("other-list")]),
    Case(
        {"event": "list.unsubscribed", "list": "news"},
        [sub("news"), ("list.unsubscribed", {"list": "news"})],
        [sub("news"), sub("other-list"), ("list.unsubscribed", {"list": "other-list"})],
    ),
    Case({"event": "tag.assigned", "tag": "vip"}, [tag("vip")], [tag("other-tag")]),
    Case(
        {"event": "tag.removed", "tag": "vip"},
        [tag("vip"), ("tag.removed", {"tag": "vip"})],
        [tag("vip"), tag("other-tag"), ("tag.removed", {"tag": "other-tag"})],
    ),
    _simple("form.submitted", "form", "optin", "other-form"),
    _simple("page.visited", "page", "sales", "other-page"),
    Case({"event": "sequence.subscribed", "sequence": "drip"}, [enroll("drip")], [enroll("other-seq")]),
    Case(
        # other-seq finishes at once; drip only after its second step, an hour later
        {"event": "sequence.finished", "sequence": "other-seq"},
        [enroll("other-seq")],
        [enroll("drip")],
    ),
    Case(
        {"event": "sequence.unsubscribed", "sequence": "drip"},
        [enroll("drip"), tag("vip")],
        [enroll("other-seq"), tag("other-tag")],
        helpers=[
            on_tag("vip", {"unsubscribe_sequence": "drip"}),
            on_tag("other-tag", {"unsubscribe_sequence": "other-seq"}),
        ],
    ),
    Case(
        # drip's step `one` is reached at once (`two` only after the run's end); other-seq has a
        # step `one` too, which must not match a filter naming drip
        {"event": "step.reached", "sequence": "drip", "step": "one"},
        [enroll("drip")],
        [enroll("other-seq")],
    ),
    _simple("link.clicked", "link", "offer", "other-link"),
    Case(
        {"event": "split_link.clicked", "link": "offer", "variant": "b"},
        [("split_link.clicked", {"link": "offer", "variant": "b"})],
        [("split_link.clicked", {"link": "offer", "variant": "a"})],
    ),
    _simple("product.purchased", "product", "course", "coaching", amount=49),
    _simple("product.refunded", "product", "course", "coaching"),
    Case(
        {"event": "product.partially_refunded", "product": "course", "amount": 20},
        [("product.partially_refunded", {"product": "course", "amount": 20})],
        [("product.partially_refunded", {"product": "course", "amount": 30})],
    ),
    _simple("subscription.canceled", "product", "course", "coaching"),
    _simple("subscription.cancellation_requested", "product", "course", "coaching"),
    _simple("subscription.cancellation_withdrawn", "product", "course", "coaching"),
    _simple("video.played", "video", "intro", "outro"),
    _simple("video.completed", "video", "intro", "outro"),
    Case(
        {"event": "score.reached", "score": 10},
        [tag("vip")],
        [tag("other-tag")],
        helpers=[on_tag("vip", {"give_points": 10}), on_tag("other-tag", {"give_points": 9})],
    ),
    Case(
        {"event": "membership.granted", "membership": "academy", "level": "pro"},
        [("membership.granted", {"membership": "academy", "level": "pro"})],
        [("membership.granted", {"membership": "academy", "level": "basic"})],
    ),
    _simple("membership.revoked", "membership", "academy", "club"),
    Case(
        {"event": "membership.level_completed", "membership": "academy", "level": "basic"},
        [("membership.level_completed", {"membership": "academy", "level": "basic"})],
        [("membership.level_completed", {"membership": "academy", "level": "pro"})],
    ),
    *(
        _simple(f"webinar.{what}", "webinar", "launch", "other-webinar")
        for what in ("registered", "attended", "missed", "watched_fully", "left_early")
    ),
    *(
        _simple(f"calendar.{what}", "calendar", "call", "other-call")
        for what in ("registered", "completed", "canceled")
    ),
    Case(
        {"event": "survey.completed", "survey": "quiz"},
        [("survey.completed", {"survey": "quiz", "answers": {"q1": "yes"}, "score": 8})],
        [("survey.completed", {"survey": "other-quiz", "answers": {"q1": "yes"}, "score": 8})],
    ),
    _simple("affiliate.joined", "product", "course", "coaching"),
    _simple("jv_broker.joined", "product", "course", "coaching"),
    *(
        # an email event names its message (left out: the contact's latest, X2); YES's email is the
        # first message of the run, NO's the second
        Case(
            {"event": f"email.{what}", "message": MESSAGE_1},
            [enroll("drip"), (f"email.{what}", {})],
            [enroll("drip"), (f"email.{what}", {})],
        )
        for what in ("delivered", "opened", "replied", "complained")
    ),
    Case(
        {"event": "email.bounced", "kind": "hard"},
        [enroll("drip"), ("email.bounced", {"kind": "hard"})],
        [enroll("drip"), ("email.bounced", {"kind": "soft"})],
    ),
    _simple("task.completed", "task", "call", "other-call"),
    Case(
        {"event": "unsubscribed", "scope": "list"},
        [sub("news"), ("unsubscribed", {"scope": "list", "list": "news"})],
        [sub("news"), ("unsubscribed", {"scope": "all"})],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_each_trigger_fires_on_its_event_and_filter_only(run_sim: RunSim, case: Case) -> None:
    """SPEC §3 trigger events: `when: {event: TYPE, FILTER: V}` fires for the contact whose event
    has that value and not for the one whose event has another (a filter matches the event's field
    of that name)."""
    log = run_sim(
        workspace(hit(case.when), *case.helpers), events({YES: case.yes, NO: case.no}), f"{DAY}T09:50:00Z"
    )
    assert fired(log) == [(YES, case.when["event"])], log.dump()
    assert tagged_hit(log) == [YES]


def test_every_trigger_event_of_the_spec_has_a_case() -> None:
    """SPEC §3: the table above covers every trigger event the engine knows (contact.created has its
    own test below: it has no filter)."""
    from dripflow.core.triggers_model import EVENT_TYPES

    assert sorted({case.id for case in CASES} | {"contact.created"}) == sorted(EVENT_TYPES)


# -- triggers with behaviour of their own ----------------------------------------------------------


def test_leaving_a_list_or_a_sequence_on_ones_own_fires_its_unsubscribed_trigger(run_sim: RunSim) -> None:
    """SPEC §3 `list.unsubscribed` / `sequence.unsubscribed` (decision, docs/decisions.md): an
    `unsubscribed` event of scope `list` or `sequence` (the contact's own click) is also that list's
    or sequence's event, so automations naming the list or sequence fire for it; a global
    unsubscribe names neither."""
    log = run_sim(
        workspace(
            hit({"event": "list.unsubscribed", "list": "news"}),
            {
                "id": "left-drip",
                "when": {"event": "sequence.unsubscribed", "sequence": "drip"},
                "then": [{"add_tag": "pinged"}],
            },
        ),
        events(
            {
                YES: [sub("news"), enroll("drip"), ("unsubscribed", {"scope": "list", "list": "news"})],
                NO: [
                    sub("news"),
                    enroll("drip"),
                    ("unsubscribed", {"scope": "sequence", "sequence": "drip"}),
                ],
            }
        ),
        f"{DAY}T09:50:00Z",
    )
    assert fired(log) == [(YES, "list.unsubscribed")], log.dump()
    assert [r["contact"] for r in log.of("automation.fired", automation="left-drip")] == [NO]


def test_contact_created_fires_once_for_a_new_contact_and_never_again(run_sim: RunSim) -> None:
    """SPEC §3 trigger `contact.created`: the first event naming a contact creates it and fires the
    trigger; later events and updates of the same contact do not."""
    log = run_sim(
        workspace(hit({"event": "contact.created"})),
        events(
            {
                YES: [
                    ("contact.created", {"contact": {"email": YES, "first_name": "Yes"}}),
                    ("contact.created", {"contact": {"email": YES, "first_name": "Yves"}}),
                    tag("vip"),
                ],
                NO: [tag("vip")],
            }
        ),
        f"{DAY}T10:00:00Z",
    )
    assert fired(log) == [(YES, "contact.created"), (NO, "contact.created")]


def test_contact_updated_names_the_field_an_action_changed(run_sim: RunSim) -> None:
    """SPEC §3 trigger `contact.updated` {changed}: `set_field` changes `plan`, which fires a trigger
    naming `plan`; one naming another field does not fire."""
    log = run_sim(
        workspace(
            on_tag("vip", {"set_field": {"key": "plan", "value": "pro"}}),
            hit({"event": "contact.updated", "changed": "plan"}),
            {
                "id": "names",
                "when": {"event": "contact.updated", "changed": "first_name"},
                "then": [{"add_tag": "pinged"}],
            },
        ),
        events({YES: [tag("vip")]}),
        f"{DAY}T10:00:00Z",
    )
    assert fired(log) == [(YES, "contact.updated")]
    assert fired(log, "names") == []


def test_contact_updated_names_the_score_points_changed(run_sim: RunSim) -> None:
    """SPEC §3 trigger `contact.updated` {changed}: `give_points` changes the score, and a trigger
    naming `score` is valid in the workspace file and fires; one naming `plan` does not."""
    log = run_sim(
        workspace(
            on_tag("vip", {"give_points": 5}),
            hit({"event": "contact.updated", "changed": "score"}),
            {
                "id": "names",
                "when": {"event": "contact.updated", "changed": "plan"},
                "then": [{"add_tag": "pinged"}],
            },
        ),
        events({YES: [tag("vip")]}),
        f"{DAY}T10:00:00Z",
    )
    assert fired(log) == [(YES, "contact.updated")]
    assert fired(log, "names") == []


def test_contact_updated_by_an_event_names_every_attribute_and_field_it_changed(run_sim: RunSim) -> None:
    """SPEC §3 trigger `contact.updated` {changed}: an event that changes a custom field and an
    attribute is one update: a trigger naming either fires, one naming neither does not, and one
    without a filter fires once."""

    def named(automation: str, **when: Any) -> dict[str, Any]:
        return {"id": automation, "when": {"event": "contact.updated", **when}, "then": [{"give_points": 1}]}

    update = {"email": YES, "first_name": "Yves", "fields": {"plan": "pro"}}
    log = run_sim(
        workspace(
            named("plan", changed="plan"),
            named("name", changed="first_name"),
            named("src", changed="source"),
            named("any"),
        ),
        events(
            {
                YES: [
                    ("contact.created", {"contact": {"email": YES, "first_name": "Yes"}}),
                    ("contact.created", {"contact": update}),
                ]
            }
        ),
        f"{DAY}T10:00:00Z",
    )
    assert sorted(r["automation"] for r in log.of("automation.fired")) == ["any", "name", "plan"]
    assert log.state()["contacts"][0]["score"] == 3


def test_form_submitted_fields_filter_matches_the_submitted_values_it_names(run_sim: RunSim) -> None:
    """SPEC §3 trigger `form.submitted` {form, fields}: the `fields` filter names submitted values
    that must match; other submitted values do not matter."""
    when = {"event": "form.submitted", "form": "optin", "fields": {"interest": "yoga"}}
    log = run_sim(
        workspace(hit(when)),
        events(
            {
                YES: [("form.submitted", {"form": "optin", "fields": {"interest": "yoga", "name": "Yes"}})],
                NO: [("form.submitted", {"form": "optin", "fields": {"interest": "golf", "name": "No"}})],
            }
        ),
        f"{DAY}T10:00:00Z",
    )
    assert fired(log) == [(YES, "form.submitted")]


def test_survey_completed_answers_and_score_filters(run_sim: RunSim) -> None:
    """SPEC §3 trigger `survey.completed` {survey, answers, score}: `answers` names the answers that
    must match (other questions do not matter); `score` must equal the survey's score."""
    by_answer = hit({"event": "survey.completed", "survey": "quiz", "answers": {"q1": "yes"}})
    by_score = {
        "id": "by-score",
        "when": {"event": "survey.completed", "survey": "quiz", "score": 8},
        "then": [{"add_tag": "pinged"}],
    }
    log = run_sim(
        workspace(by_answer, by_score),
        events(
            {
                YES: [
                    ("survey.completed", {"survey": "quiz", "answers": {"q1": "yes", "q2": "no"}, "score": 8})
                ],
                NO: [
                    ("survey.completed", {"survey": "quiz", "answers": {"q1": "no", "q2": "no"}, "score": 5})
                ],
            }
        ),
        f"{DAY}T10:00:00Z",
    )
    assert fired(log) == [(YES, "survey.completed")]
    assert fired(log, "by-score") == [(YES, "survey.completed")]


def test_score_reached_fires_on_the_first_crossing_only(run_sim: RunSim) -> None:
    """SPEC §3 trigger `score.reached` (first crossing only): 0 → 6 → 12 crosses 10 once; dropping
    to 7 and climbing to 13 again is not a first crossing, so the automation does not fire again."""
    log = run_sim(
        workspace(
            hit({"event": "score.reached", "score": 10}),
            on_tag("vip", {"give_points": 6}),
            on_tag("other-tag", {"subtract_points": 5}),
        ),
        events(
            {
                YES: [
                    tag("vip"),
                    ("tag.removed", {"tag": "vip"}),
                    tag("vip"),  # 12: crosses 10
                    tag("other-tag"),  # 7
                    ("tag.removed", {"tag": "vip"}),
                    tag("vip"),  # 13: above 10 again, but not for the first time
                ]
            }
        ),
        f"{DAY}T10:00:00Z",
    )
    assert log.state()["contacts"][0]["score"] == 13
    assert [r["at"] for r in log.of("automation.fired", automation="hit")] == [f"{DAY}T09:02:00Z"]


def test_step_reached_without_a_step_filter_fires_for_every_step(run_sim: RunSim) -> None:
    """SPEC §3 trigger `step.reached` {sequence}: each step the contact reaches is an event of its own,
    also when two steps run in the same moment (`pair` sends `a` and `b` at once)."""
    count = {"id": "count", "when": {"event": "step.reached"}, "then": [{"give_points": 1}]}
    log = run_sim(workspace(count), events({YES: [enroll("drip"), enroll("pair")]}), f"{DAY}T12:00:00Z")
    assert [r["at"] for r in log.of("automation.fired", automation="count")] == [
        f"{DAY}T09:00:00Z",  # drip.one
        f"{DAY}T09:01:00Z",  # pair.a
        f"{DAY}T09:01:00Z",  # pair.b
        f"{DAY}T10:00:00Z",  # drip.two
    ]
    assert log.state()["contacts"][0]["score"] == 4
