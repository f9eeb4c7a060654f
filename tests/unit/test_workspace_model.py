"""The typed workspace model: every part of SPEC §2 and §3 parses, keeps its meaning and dumps back."""

from datetime import date, time, timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from dripflow.core.actions_model import (
    ACTION_KINDS,
    Action,
    AddTag,
    Goto,
    RuleAction,
    SetField,
)
from dripflow.core.conditions_model import (
    CONDITION_KINDS,
    AllOf,
    AnyOf,
    Condition,
    EmailDomain,
    FieldIs,
    HasTag,
    Not,
    OnList,
    walk,
)
from dripflow.core.model import Mailbox, Sequence, Workspace
from dripflow.core.steps_model import EmailStep, RuleStep, Step, TaskStep, WaitUntilStep
from dripflow.core.triggers_model import EVENT_TYPES, ListEvent, Trigger
from dripflow.core.validate import load_workspace_file, load_workspace_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONDITIONS = TypeAdapter(Condition)
TRIGGERS = TypeAdapter(Trigger)
ACTIONS = TypeAdapter(Action)
RULE_ACTIONS = TypeAdapter(RuleAction)
STEPS = TypeAdapter(Step)

# SPEC §3, "Conditions": every key, with an argument of the documented shape.
SPEC_CONDITIONS = {
    "on_list": "newsletter",
    "has_tag": "vip",
    "field": {"key": "plan", "op": "eq", "value": "pro"},
    "source": "webinar",
    "email_domain": ["rival.test"],
    "lead_status": "active",
    "filled_form": "optin",
    "in_sequence": "onboarding",
    "finished_sequence": "onboarding",
    "reached_step": {"sequence": "onboarding", "step": "tips"},
    "opened_email": {"sequence": "onboarding", "step": "hello"},
    "clicked_link": "offer",
    "clicked_split_link": "offer",
    "visited_page": "sales-page",
    "bought_product": "course-101",
    "refunded_product": "course-101",
    "partially_refunded_product": "course-101",
    "canceled_subscription": "coaching",
    "active_subscription": "coaching",
    "played_video": "intro",
    "completed_video": "intro",
    "score": {"op": "gte", "value": 20},
    "has_membership": {"membership": "academy", "level": "pro"},
    "completed_level": {"membership": "academy", "level": "basic"},
    "webinar_registered": "launch",
    "webinar_attended": "launch",
    "webinar_missed": "launch",
    "webinar_watched_fully": "launch",
    "webinar_left_early": "launch",
    "calendar_active": "discovery-call",
    "calendar_completed": "discovery-call",
    "calendar_canceled": "discovery-call",
    "completed_survey": "quiz",
    "survey_answer": {"survey": "quiz", "question": "goal", "is": "growth"},
    "survey_score": {"survey": "quiz", "op": "gt", "value": 5},
    "is_affiliate": True,
    "is_jv_broker": "course-101",
    "engagement": {"op": "gte", "value": "medium"},
}

# SPEC §3, "Trigger events": every event type of the table.
SPEC_EVENTS = [
    "contact.created",
    "contact.updated",
    "list.subscribed",
    "list.unsubscribed",
    "tag.assigned",
    "tag.removed",
    "form.submitted",
    "page.visited",
    "sequence.subscribed",
    "sequence.finished",
    "sequence.unsubscribed",
    "step.reached",
    "link.clicked",
    "split_link.clicked",
    "product.purchased",
    "product.refunded",
    "product.partially_refunded",
    "subscription.canceled",
    "subscription.cancellation_requested",
    "subscription.cancellation_withdrawn",
    "video.played",
    "video.completed",
    "score.reached",
    "membership.granted",
    "membership.revoked",
    "membership.level_completed",
    "webinar.registered",
    "webinar.attended",
    "webinar.missed",
    "webinar.watched_fully",
    "webinar.left_early",
    "calendar.registered",
    "calendar.completed",
    "calendar.canceled",
    "survey.completed",
    "affiliate.joined",
    "jv_broker.joined",
    "email.delivered",
    "email.opened",
    "email.replied",
    "email.complained",
    "email.bounced",
    "task.completed",
    "unsubscribed",
]

# SPEC §3, "Actions".
SPEC_ACTIONS = {
    "subscribe_list": "customers",
    "unsubscribe_list": "newsletter",
    "add_tag": "vip",
    "remove_tag": "vip",
    "set_field": {"key": "plan", "value": "pro"},
    "clear_field": "plan",
    "subscribe_sequence": "onboarding",
    "unsubscribe_sequence": "onboarding",
    "give_points": 10,
    "subtract_points": 5,
    "grant_membership": {"membership": "academy", "level": "pro"},
    "revoke_membership": "academy",
    "register_webinar": "launch",
    "unregister_webinar": "launch",
    "subscribe_calendar": "discovery-call",
    "cancel_calendar": "discovery-call",
    "refund_order": "course-101",
    "cancel_subscription": "coaching",
    "webhook": {"url": "https://hooks.acme.test/x", "payload": {"a": 1}},
}


def test_conditions_parse_to_a_tree_the_evaluator_can_match() -> None:
    # SPEC §3: single-key conditions combined with all / any / not
    cond = CONDITIONS.validate_python({"all": [{"on_list": "newsletter"}, {"not": {"has_tag": "customer"}}]})
    assert cond == AllOf(items=(OnList(arg="newsletter"), Not(item=HasTag(arg="customer"))))
    match cond:
        case AllOf(items=(OnList(arg=list_name), Not(item=HasTag(arg=tag)))):
            assert (list_name, tag) == ("newsletter", "customer")
        case _:
            pytest.fail("the tree does not pattern-match")
    assert [node.kind for node in walk(cond)] == ["all", "on_list", "not", "has_tag"]
    assert hash(cond) == hash(CONDITIONS.validate_python(CONDITIONS.dump_python(cond, mode="json")))


@pytest.mark.parametrize(("key", "arg"), sorted(SPEC_CONDITIONS.items()))
def test_every_condition_of_the_spec_is_understood_and_dumps_back(key: str, arg: object) -> None:
    # SPEC §3: each condition key with its argument shape
    cond = CONDITIONS.validate_python({key: arg})
    assert cond.kind == key
    assert CONDITIONS.validate_python(CONDITIONS.dump_python(cond, mode="json")) == cond


def test_the_model_knows_exactly_the_spec_conditions_events_and_actions() -> None:
    # SPEC §3: nothing missing, nothing invented
    assert set(CONDITION_KINDS) - {"all", "any", "not"} == set(SPEC_CONDITIONS)
    assert set(EVENT_TYPES) == set(SPEC_EVENTS)
    assert set(ACTION_KINDS) - {"goto", "complete"} == set(SPEC_ACTIONS)


def test_condition_arguments_are_typed() -> None:
    field = CONDITIONS.validate_python({"field": {"key": "company_size", "op": "gt", "value": 10}})
    assert isinstance(field, FieldIs) and field.arg.value == 10
    domains = CONDITIONS.validate_python({"email_domain": "Rival.TEST"})
    assert isinstance(domains, EmailDomain) and domains.arg == ("rival.test",)
    either = CONDITIONS.validate_python({"any": [{"has_tag": "a"}, {"has_tag": "b"}]})
    assert isinstance(either, AnyOf) and len(either.items) == 2


@pytest.mark.parametrize("event", SPEC_EVENTS)
def test_every_trigger_event_of_the_spec_is_understood(event: str) -> None:
    # SPEC §3: `when: {event: TYPE, ...filters}`
    trigger = TRIGGERS.validate_python({"event": event})
    assert trigger.event == event
    assert trigger.filters() == {}


def test_trigger_filters_are_given_back_by_their_file_names() -> None:
    trigger = TRIGGERS.validate_python({"event": "list.subscribed", "list": "customers"})
    assert isinstance(trigger, ListEvent)
    assert trigger.filters() == {"list": "customers"}


@pytest.mark.parametrize(("key", "arg"), sorted(SPEC_ACTIONS.items()))
def test_every_action_of_the_spec_is_understood_and_dumps_back(key: str, arg: object) -> None:
    # SPEC §3, "Actions"
    action = ACTIONS.validate_python({key: arg})
    assert action.kind == key
    assert ACTIONS.validate_python(ACTIONS.dump_python(action, mode="json")) == action


def test_goto_and_complete_belong_to_rule_steps_only() -> None:
    # SPEC §3: "inside rule steps only: goto: STEP, complete: REASON"
    assert RULE_ACTIONS.validate_python({"goto": "tips"}) == Goto(arg="tips")
    with pytest.raises(ValidationError, match="can only be used in a rule step"):
        ACTIONS.validate_python({"goto": "tips"})
    assert isinstance(ACTIONS.validate_python({"set_field": {"key": "plan", "value": 3}}), SetField)
    assert ACTIONS.validate_python({"add_tag": "vip"}) == AddTag(arg="vip")


def test_steps_are_chosen_by_type_with_the_spec_defaults() -> None:
    # SPEC §2 "Step fields": active defaults to true, after to 0 (immediately)
    email = STEPS.validate_python({"id": "hello", "type": "email", "template": "welcome"})
    assert isinstance(email, EmailStep)
    assert email.active is True and email.after.span == timedelta(0) and email.at is None
    task = STEPS.validate_python({"id": "call", "type": "task", "title": "Call", "due": {"days": 1}})
    assert isinstance(task, TaskStep) and task.assignee == "owner" and task.due.span == timedelta(days=1)
    rule = STEPS.validate_python(
        {"id": "r", "type": "rule", "if": {"has_tag": "vip"}, "else": [{"goto": "x"}]}
    )
    assert isinstance(rule, RuleStep) and rule.if_ == HasTag(arg="vip") and rule.else_ == (Goto(arg="x"),)
    wait = STEPS.validate_python({"id": "w", "type": "wait_until", "until": {"has_tag": "vip"}})
    assert isinstance(wait, WaitUntilStep) and wait.timeout is None


def test_delays_times_and_durations_are_typed() -> None:
    # SPEC T3-T5, T8, S2, D7
    step = STEPS.validate_python(
        {"id": "t", "type": "email", "template": "x", "after": {"days": 1}, "at": "07:00"}
    )
    assert step.after.whole_days and step.at == time(7, 0)
    assert STEPS.validate_python(
        {"id": "t", "type": "email", "template": "x", "after": 0}
    ).after.span == timedelta(0)
    ws = load_workspace_text(
        "workspace: {name: Acme Coaching, timezone: UTC}\n"
        "ruleset: {reenroll: 30d, frequency: {max: 3, per: 7d}}\n",
        "w.yaml",
    )
    assert ws.workspace.id == "acme-coaching"  # SPEC §2: the name, slugified
    assert ws.workspace.default_send_time == time(10, 0)  # SPEC T4
    assert ws.workspace.date_step_grace == timedelta(hours=2)  # SPEC T8
    assert ws.ruleset.reenroll == timedelta(days=30)
    assert ws.ruleset.frequency is not None and ws.ruleset.frequency.per == timedelta(days=7)
    assert ws.model_dump(mode="json")["ruleset"]["reenroll"] == "30d"


def test_a_sequence_mailbox_may_be_a_pool() -> None:
    # SPEC D8
    pooled = Sequence.model_validate({"id": "s", "mailbox": ["ann", "bob"]})
    single = Sequence.model_validate({"id": "s", "mailbox": "ann"})
    assert pooled.mailbox_pool == ("ann", "bob") and single.mailbox_pool == ("ann",)
    assert single.max_loops == 52  # SPEC S8 default


def test_a_mailbox_from_must_be_an_address() -> None:
    box = Mailbox.model_validate({"id": "ann", "from": "Ann Lee <ann@acme.test>"})
    assert box.address == "ann@acme.test"
    with pytest.raises(ValidationError, match="not an email address"):
        Mailbox.model_validate({"id": "ann", "from": "Ann Lee"})


def test_the_demo_dumps_to_json_that_loads_back_equal() -> None:
    # SPEC §2: the same model is editable through the API, so its canonical form must round-trip
    demo = load_workspace_file(EXAMPLES / "demo.yaml")
    dumped = demo.model_dump(mode="json")
    assert load_workspace_text(yaml.safe_dump(dumped, sort_keys=False), "dump.yaml") == demo
    assert Workspace.model_validate(dumped) == demo
    assert dumped["schedules"][0]["excluded_dates"][0] == "2026-12-24"
    assert demo.schedules[0].excluded_dates[0] == date(2026, 12, 24)
