"""Every action of SPEC §3 through the real engine (``run_sim``), with rules A1 and A2.

The action under test runs in automation ``act`` (``when: tag.assigned go``). For each action:

* its effect on the contact: a ``check`` automation (``when: tag.assigned check``) whose ``if:`` reads
  the changed state is false before the action and true after it — what a user's own automations
  would see;
* A1: the event the action emits fires a ``follow`` automation (the cascade), and ``action.applied``
  is logged with its value;
* A2: an action whose effect lives in another system queues the signed webhook to the workspace's
  integration URL (``webhook.queued``; delivery and signatures are tests/integration/engine/
  test_webhooks.py's business).

Then A1's other half: an action that changes nothing is not applied, emits nothing, fires nothing
and queues no webhook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from dripflow.store.database import transaction
from dripflow.store.tables import Fact
from tests.integration.engine.conftest import Log, RunSim
from tests.integration.engine.test_catalog_triggers import (
    DAY,
    NO,
    YES,
    Ev,
    enroll,
    events,
    sub,
    tag,
    workspace,
)

HOOKS = "https://hooks.shop.test/dripflow"
INTEGRATION = {"integrations": {"webhook": HOOKS, "secret_env": "DRIPFLOW_TEST_HOOK_SECRET"}}
CRM = "https://crm.shop.test/hook"


def ev(kind: str, **fields: Any) -> Ev:
    return (kind, fields)


def untag(name: str) -> Ev:
    return ("tag.removed", {"tag": name})


@dataclass(frozen=True)
class Case:
    name: str
    action: dict[str, Any]
    value: Any  # what `action.applied` logs
    follow: dict[str, Any] | None  # a trigger the emitted event fires (A1); None: no §3 event
    holds: dict[str, Any] | None  # a condition false before the action and true after it
    webhook: str | None = None  # A2: the event of the webhook queued to the integration URL
    setup: list[Ev] = field(default_factory=list)
    contact: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case(
        "subscribe_list",
        {"subscribe_list": "news"},
        "news",
        {"event": "list.subscribed", "list": "news"},
        {"on_list": "news"},
    ),
    Case(
        "unsubscribe_list",
        {"unsubscribe_list": "news"},
        "news",
        {"event": "list.unsubscribed", "list": "news"},
        {"not": {"on_list": "news"}},
        setup=[sub("news")],
    ),
    Case("add_tag", {"add_tag": "vip"}, "vip", {"event": "tag.assigned", "tag": "vip"}, {"has_tag": "vip"}),
    Case(
        "remove_tag",
        {"remove_tag": "vip"},
        "vip",
        {"event": "tag.removed", "tag": "vip"},
        {"not": {"has_tag": "vip"}},
        setup=[tag("vip")],
    ),
    Case(
        "set_field",
        {"set_field": {"key": "plan", "value": "pro"}},
        {"plan": "pro"},
        {"event": "contact.updated", "changed": "plan"},
        {"field": {"key": "plan", "op": "eq", "value": "pro"}},
        contact={"fields": {"plan": "basic"}},
    ),
    Case(
        "clear_field",
        {"clear_field": "plan"},
        "plan",
        {"event": "contact.updated", "changed": "plan"},
        {"not": {"field": {"key": "plan", "op": "exists"}}},
        contact={"fields": {"plan": "basic"}},
    ),
    Case(
        "subscribe_sequence",
        {"subscribe_sequence": "drip"},
        "drip",
        {"event": "sequence.subscribed", "sequence": "drip"},
        {"in_sequence": "drip"},
    ),
    Case(
        "unsubscribe_sequence",
        {"unsubscribe_sequence": "drip"},
        "drip",
        {"event": "sequence.unsubscribed", "sequence": "drip"},
        {"not": {"in_sequence": "drip"}},
        setup=[enroll("drip")],
    ),
    Case(
        "give_points",
        {"give_points": 10},
        10,
        {"event": "score.reached", "score": 10},
        {"score": {"op": "eq", "value": 10}},
    ),
    Case(
        "subtract_points",
        {"subtract_points": 3},
        -3,
        {"event": "contact.updated"},  # the validator knows no field `score` to name in `changed`
        {"score": {"op": "eq", "value": -3}},
    ),
    Case(
        "grant_membership",
        {"grant_membership": {"membership": "academy", "level": "pro"}},
        {"membership": "academy", "level": "pro"},
        {"event": "membership.granted", "membership": "academy", "level": "pro"},
        {"has_membership": {"membership": "academy", "level": "pro"}},
        webhook="membership.granted",
    ),
    Case(
        "revoke_membership",
        {"revoke_membership": "academy"},
        "academy",
        {"event": "membership.revoked", "membership": "academy"},
        {"not": {"has_membership": {"membership": "academy"}}},
        webhook="membership.revoked",
        setup=[ev("membership.granted", membership="academy", level="basic")],
    ),
    Case(
        "register_webinar",
        {"register_webinar": "launch"},
        "launch",
        {"event": "webinar.registered", "webinar": "launch"},
        {"webinar_registered": "launch"},
        webhook="webinar.registered",
    ),
    Case(
        # §3 has no event or condition for an unregistration: it is recorded and sent on (A2)
        "unregister_webinar",
        {"unregister_webinar": "launch"},
        "launch",
        None,
        None,
        webhook="webinar.unregistered",
        setup=[ev("webinar.registered", webinar="launch")],
    ),
    Case(
        "subscribe_calendar",
        {"subscribe_calendar": "call"},
        "call",
        {"event": "calendar.registered", "calendar": "call"},
        {"calendar_active": "call"},
        webhook="calendar.registered",
    ),
    Case(
        "cancel_calendar",
        {"cancel_calendar": "call"},
        "call",
        {"event": "calendar.canceled", "calendar": "call"},
        {"all": [{"calendar_canceled": "call"}, {"not": {"calendar_active": "call"}}]},
        webhook="calendar.canceled",
        setup=[ev("calendar.registered", calendar="call")],
    ),
    Case(
        "refund_order",
        {"refund_order": "course"},
        "course",
        {"event": "product.refunded", "product": "course"},
        {"refunded_product": "course"},
        webhook="product.refunded",
        setup=[ev("product.purchased", product="course", amount=49)],
    ),
    Case(
        "cancel_subscription",
        {"cancel_subscription": "course"},
        "course",
        {"event": "subscription.canceled", "product": "course"},
        {"all": [{"canceled_subscription": "course"}, {"not": {"active_subscription": "course"}}]},
        webhook="subscription.canceled",
        setup=[ev("product.purchased", product="course")],
    ),
    Case(
        "webhook",
        {"webhook": {"url": CRM, "payload": {"source": "dripflow"}}},
        {"url": CRM, "payload": {"source": "dripflow"}},
        None,
        None,
    ),
]


def _run(run_sim: RunSim, case: Case) -> Log:
    automations: list[dict[str, Any]] = [
        {"id": "act", "when": {"event": "tag.assigned", "tag": "go"}, "then": [case.action]}
    ]
    if case.follow is not None:
        automations.append({"id": "follow", "when": case.follow, "then": [{"add_tag": "pinged"}]})
    if case.holds is not None:
        automations.append(
            {
                "id": "check",
                "when": {"event": "tag.assigned", "tag": "check"},
                "if": case.holds,
                "then": [{"add_tag": "hit"}],
            }
        )
    timeline = [
        ("contact.created", {"contact": {"email": YES, **case.contact}}),
        *case.setup,
        tag("check"),  # before the action: the state it sets is not there yet
        untag("check"),
        tag("go"),  # the action runs
        tag("check"),  # after it
    ]
    return run_sim(workspace(*automations, delivery=INTEGRATION), events({YES: timeline}), f"{DAY}T09:50:00Z")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_action_changes_the_contact_and_emits_its_event(run_sim: RunSim, case: Case) -> None:
    """SPEC §3 actions and A1 (the action changes the contact and emits the matching event, which
    fires a further automation) and A2 (an effect in another system queues its webhook)."""
    log = _run(run_sim, case)
    applied = log.of("action.applied", by="automation:act")
    assert [(r["action"], r["value"]) for r in applied] == [(case.name, case.value)], log.dump()
    if case.follow is not None:
        assert [r["event"] for r in log.of("automation.fired", automation="follow")] == [case.follow["event"]]
    if case.holds is not None:
        # false before the action (skipped), true after it (fired)
        assert [r["kind"] for r in log.records if r.get("automation") == "check"] == [
            "automation.skipped",
            "automation.fired",
        ]
    queued = [(r["url"], r["event"]) for r in log.of("webhook.queued")]
    if case.name == "webhook":
        assert queued == [(CRM, "webhook")]
    else:
        assert queued == ([(HOOKS, case.webhook)] if case.webhook else [])


def test_every_action_of_the_spec_has_a_case() -> None:
    """SPEC §3: the table covers every action an automation may run (goto and complete are rule-step
    only: tests/integration/engine/test_rules_steps.py and test_rules_sequences.py)."""
    from dripflow.core.actions_model import ACTION_CLASSES

    assert sorted(case.name for case in CASES) == sorted(cls.kind for cls in ACTION_CLASSES)


def test_unregister_webinar_is_recorded_on_the_contact(run_sim: RunSim) -> None:
    """A2: `unregister_webinar` records the change on the contact (its history of the webinar ends
    with the unregistration), as `register_webinar` does."""
    log = _run(run_sim, next(case for case in CASES if case.name == "unregister_webinar"))
    with transaction(log.result.engine) as session:
        history = session.execute(
            select(Fact.kind).where(Fact.key == "launch").order_by(Fact.at, Fact.id)
        ).scalars()
        assert list(history) == ["webinar.registered", "webinar.unregistered"]


def test_unsubscribe_sequence_closes_the_enrollment_and_subscribe_sequence_opens_one(run_sim: RunSim) -> None:
    """SPEC §3 `subscribe_sequence` enrolls the contact (the first step goes out) and
    `unsubscribe_sequence` closes the enrollment as completed, unsubscribed (S13, §6)."""
    automations = [
        {
            "id": "in",
            "when": {"event": "tag.assigned", "tag": "go"},
            "then": [{"subscribe_sequence": "drip"}],
        },
        {
            "id": "out",
            "when": {"event": "tag.assigned", "tag": "vip"},
            "then": [{"unsubscribe_sequence": "drip"}],
        },
    ]
    log = run_sim(workspace(*automations), events({YES: [tag("go"), tag("vip")]}), f"{DAY}T12:00:00Z")
    assert [r["step"] for r in log.sent(contact=YES, sequence="drip")] == ["one"]
    assert log.statuses(YES, "drip") == [("active", None), ("completed", "unsubscribed")]


# -- A1: an action that changes nothing emits nothing ---------------------------------------------


@dataclass(frozen=True)
class NoOp:
    name: str
    action: dict[str, Any]
    follow: dict[str, Any] | None
    setup: list[Ev] = field(default_factory=list)
    contact: dict[str, Any] = field(default_factory=dict)


NO_OPS = [
    NoOp("subscribe_list", {"subscribe_list": "news"}, {"event": "list.subscribed"}, [sub("news")]),
    NoOp("unsubscribe_list", {"unsubscribe_list": "news"}, {"event": "list.unsubscribed"}),
    NoOp("add_tag", {"add_tag": "vip"}, {"event": "tag.assigned", "tag": "vip"}, [tag("vip")]),
    NoOp("remove_tag", {"remove_tag": "vip"}, {"event": "tag.removed"}),
    NoOp(
        "set_field",
        {"set_field": {"key": "plan", "value": "pro"}},
        {"event": "contact.updated"},
        contact={"fields": {"plan": "pro"}},
    ),
    NoOp("clear_field", {"clear_field": "plan"}, {"event": "contact.updated"}),
    NoOp(
        "subscribe_sequence",
        {"subscribe_sequence": "drip"},
        {"event": "sequence.subscribed"},
        [enroll("drip")],
    ),
    NoOp("unsubscribe_sequence", {"unsubscribe_sequence": "drip"}, {"event": "sequence.unsubscribed"}),
    NoOp(
        "grant_membership",
        {"grant_membership": {"membership": "academy", "level": "pro"}},
        {"event": "membership.granted"},
        [ev("membership.granted", membership="academy", level="pro")],
    ),
    NoOp("revoke_membership", {"revoke_membership": "academy"}, {"event": "membership.revoked"}),
    NoOp(
        "revoke_membership_again",
        {"revoke_membership": "academy"},
        {"event": "membership.revoked"},
        [
            ev("membership.granted", membership="academy", level="pro"),
            ev("membership.revoked", membership="academy"),
        ],
    ),
    NoOp(
        "register_webinar",
        {"register_webinar": "launch"},
        {"event": "webinar.registered"},
        [ev("webinar.registered", webinar="launch")],
    ),
    NoOp("unregister_webinar", {"unregister_webinar": "launch"}, None),
    NoOp(
        "subscribe_calendar",
        {"subscribe_calendar": "call"},
        {"event": "calendar.registered"},
        [ev("calendar.registered", calendar="call")],
    ),
    NoOp("cancel_calendar", {"cancel_calendar": "call"}, {"event": "calendar.canceled"}),
    NoOp(
        "cancel_calendar_completed",
        {"cancel_calendar": "call"},
        {"event": "calendar.canceled"},
        [ev("calendar.registered", calendar="call"), ev("calendar.completed", calendar="call")],
    ),
    NoOp("refund_order", {"refund_order": "course"}, {"event": "product.refunded"}),
    NoOp(
        "refund_order_again",
        {"refund_order": "course"},
        {"event": "product.refunded"},
        [ev("product.purchased", product="course"), ev("product.refunded", product="course")],
    ),
    NoOp("cancel_subscription", {"cancel_subscription": "course"}, {"event": "subscription.canceled"}),
    NoOp(
        "cancel_subscription_again",
        {"cancel_subscription": "course"},
        {"event": "subscription.canceled"},
        [ev("product.purchased", product="course"), ev("subscription.canceled", product="course")],
    ),
]


@pytest.mark.parametrize("case", NO_OPS, ids=lambda case: case.name)
def test_an_action_that_changes_nothing_emits_nothing(run_sim: RunSim, case: NoOp) -> None:
    """A1: an action that changes nothing (adding a tag the contact has, revoking a membership it
    does not have, refunding an order it never placed …) is not applied, emits no event, fires no
    automation, and (A2) sends nothing to another system."""
    automations: list[dict[str, Any]] = [
        {"id": "act", "when": {"event": "tag.assigned", "tag": "go"}, "then": [case.action]}
    ]
    if case.follow is not None:
        automations.append({"id": "follow", "when": case.follow, "then": [{"add_tag": "pinged"}]})
    timeline = [("contact.created", {"contact": {"email": YES, **case.contact}}), *case.setup, tag("go")]
    log = run_sim(workspace(*automations, delivery=INTEGRATION), events({YES: timeline}), f"{DAY}T09:50:00Z")
    go_at = log.of("automation.fired", automation="act")[0]["at"]
    assert log.of("action.applied", by="automation:act") == [], log.dump()
    assert [r for r in log.of("automation.fired", automation="follow") if r["at"] >= go_at] == []
    assert [r for r in log.of("webhook.queued") if r["at"] >= go_at] == []


def test_a1_to_fire_again_remove_then_re_add(run_sim: RunSim) -> None:
    """A1: adding a tag the contact already has does not fire `tag.assigned`; removing it and adding
    it again does."""
    automations = [
        {"id": "act", "when": {"event": "tag.assigned", "tag": "go"}, "then": [{"add_tag": "vip"}]},
        {"id": "follow", "when": {"event": "tag.assigned", "tag": "vip"}, "then": [{"give_points": 1}]},
    ]
    timeline = [tag("go"), untag("go"), tag("go"), untag("go"), untag("vip"), tag("go")]
    log = run_sim(workspace(*automations), events({YES: timeline}), f"{DAY}T09:50:00Z")
    assert [r["at"] for r in log.of("automation.fired", automation="act")] == [
        f"{DAY}T09:00:00Z",
        f"{DAY}T09:02:00Z",
        f"{DAY}T09:05:00Z",
    ]
    assert [r["at"] for r in log.of("automation.fired", automation="follow")] == [
        f"{DAY}T09:00:00Z",
        f"{DAY}T09:05:00Z",
    ]
    assert log.state()["contacts"][0]["score"] == 2


def test_a2_without_an_integration_url_the_change_is_still_recorded(run_sim: RunSim) -> None:
    """A2: the change is recorded on the contact whether or not an integration URL is configured;
    with none, no webhook is queued (and nothing fails)."""
    automations = [
        {
            "id": "act",
            "when": {"event": "tag.assigned", "tag": "go"},
            "then": [{"grant_membership": {"membership": "academy", "level": "basic"}}],
        },
        {
            "id": "check",
            "when": {"event": "tag.assigned", "tag": "check"},
            "if": {"has_membership": {"membership": "academy", "level": "basic"}},
            "then": [{"add_tag": "hit"}],
        },
    ]
    log = run_sim(workspace(*automations), events({YES: [tag("go"), tag("check")]}), f"{DAY}T09:50:00Z")
    assert [r["action"] for r in log.of("action.applied")] == ["grant_membership", "add_tag"]
    assert log.of("webhook.queued") == []


def test_grant_membership_of_another_level_is_a_change(run_sim: RunSim) -> None:
    """SPEC §3 `grant_membership: {membership, level}`: each level has its own state, so granting
    `pro` to a `basic` member is a change (applied, `membership.granted` for pro, a webhook)."""
    automations = [
        {
            "id": "act",
            "when": {"event": "tag.assigned", "tag": "go"},
            "then": [{"grant_membership": {"membership": "academy", "level": "pro"}}],
        },
        {
            "id": "follow",
            "when": {"event": "membership.granted", "membership": "academy", "level": "pro"},
            "then": [{"add_tag": "pinged"}],
        },
    ]
    timeline = [ev("membership.granted", membership="academy", level="basic"), tag("go")]
    log = run_sim(workspace(*automations, delivery=INTEGRATION), events({YES: timeline}), f"{DAY}T09:50:00Z")
    assert [r["value"] for r in log.of("action.applied", by="automation:act")] == [
        {"membership": "academy", "level": "pro"}
    ]
    assert len(log.of("automation.fired", automation="follow")) == 1
    assert [r["event"] for r in log.of("webhook.queued")] == ["membership.granted"]


def test_template_link_actions_run_when_that_link_of_its_email_is_clicked(run_sim: RunSim) -> None:
    """SPEC §2 `templates.T.links` (actions when this email's link is clicked), §3 actions and A1: a
    click on `offer` in an email built from `promo` tags the contact `vip`, which fires a further
    automation; a second click changes nothing; a click on another link, or on `offer` in an email
    of another template, runs nothing."""
    templates = {
        "hello": {"subject": "Hello", "text": "Hi"},
        "promo": {
            "subject": "Offer",
            "text": "Go {{ link('offer') }} or {{ link('other-link') }}",
            "links": {"offer": [{"add_tag": "vip"}]},
        },
    }
    sequences = [
        {"id": "drip", "steps": [{"id": "one", "type": "email", "template": "promo"}]},
        {"id": "other-seq", "steps": [{"id": "one", "type": "email", "template": "hello"}]},
        {"id": "pair", "steps": [{"id": "a", "type": "email", "template": "hello"}]},
    ]
    follow = {"id": "follow", "when": {"event": "tag.assigned", "tag": "vip"}, "then": [{"give_points": 1}]}
    click = ("link.clicked", {"link": "offer"})
    log = run_sim(
        workspace(follow, templates=templates, sequences=sequences),
        events(
            {
                YES: [enroll("drip"), ("link.clicked", {"link": "other-link"}), click, click],
                NO: [enroll("other-seq"), click],
            }
        ),
        f"{DAY}T10:00:00Z",
    )
    assert [
        (r["contact"], r["at"], r["value"], r["by"]) for r in log.of("action.applied", action="add_tag")
    ] == [(YES, f"{DAY}T09:02:00Z", "vip", "link:promo.offer")]
    assert [r["contact"] for r in log.of("automation.fired", automation="follow")] == [YES]
