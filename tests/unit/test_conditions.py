"""The condition evaluator (SPEC §3): every condition kind holds for one contact and not for another,
the decisions of docs/conditions.md, and properties of the combinators and of engagement."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from dripflow.core.conditions import ENGAGEMENT_WINDOW, engagement_level, evaluate, explain_false
from dripflow.core.conditions_model import (
    CONDITION_CLASSES,
    ENGAGEMENT_ORDER,
    AllOf,
    AnyOf,
    Condition,
    ConditionModel,
    ConditionNode,
    HasTag,
    Not,
)
from dripflow.core.contact_view import ContactView, EnrollmentView, FactView

CONDITIONS: TypeAdapter[ConditionNode] = TypeAdapter(Condition)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
PROPERTY = settings(max_examples=200, deadline=None)


def cond(raw: object) -> ConditionNode:
    """A condition as written in the workspace file."""
    return CONDITIONS.validate_python(raw)


def fact(kind: str, key: str | None = None, ago: timedelta = DAY, **detail: Any) -> FactView:
    return FactView(kind=kind, key=key, at=NOW - ago, detail=detail)


def contact(*facts: FactView, **attrs: Any) -> ContactView:
    return ContactView(id=1, facts=facts, **attrs)


def enrolled(sequence: str, status: str, *reached: str, finished: bool = False) -> tuple[EnrollmentView, ...]:
    return (EnrollmentView(sequence, status, frozenset(reached), finished),)


def opens(count: int, ago: timedelta = DAY) -> tuple[FactView, ...]:
    return tuple(fact("email.opened", ago=ago, message=index) for index in range(count))


# --------------------------------------------------------------------------------------------------
# Every condition kind: one contact for which it holds, one for which it does not (SPEC §3).


@dataclass(frozen=True)
class Case:
    raw: dict[str, Any]
    holds: ContactView
    fails: ContactView

    @property
    def id(self) -> str:
        return next(iter(self.raw))


CASES = [
    # SPEC §3 on_list; L3: `lists` holds current subscriptions only.
    Case(
        {"on_list": "newsletter"}, contact(lists=frozenset({"newsletter"})), contact(lists=frozenset({"x"}))
    ),
    # SPEC §3 has_tag
    Case({"has_tag": "vip"}, contact(tags=frozenset({"vip", "a"})), contact(tags=frozenset({"vipp"}))),
    # SPEC §3 field: text compares case-insensitively.
    Case(
        {"field": {"key": "plan", "op": "eq", "value": "pro"}},
        contact(fields={"plan": "PRO"}),
        contact(fields={"plan": "basic"}),
    ),
    # SPEC §3 source (case-insensitive)
    Case({"source": "webinar"}, contact(source="Webinar"), contact(source="ads")),
    # SPEC §3 email_domain: exact domain, case-insensitive; a subdomain is another domain.
    Case({"email_domain": ["rival.test"]}, contact(email="x@Rival.Test"), contact(email="x@eu.rival.test")),
    # SPEC §3 lead_status, L1
    Case({"lead_status": "active"}, contact(lead_status="active"), contact(lead_status="inactive")),
    # SPEC §3 filled_form: a form.submitted fact
    Case(
        {"filled_form": "optin"},
        contact(fact("form.submitted", "optin")),
        contact(fact("form.submitted", "other")),
    ),
    # SPEC §3 in_sequence; S1/S13: a finished enrollment is still in the sequence, a completed one not.
    Case(
        {"in_sequence": "onboarding"},
        contact(enrollments=enrolled("onboarding", "finished", finished=True)),
        contact(enrollments=enrolled("onboarding", "completed", finished=True)),
    ),
    # SPEC §3 finished_sequence: ran its last step at least once, even if closed since.
    Case(
        {"finished_sequence": "onboarding"},
        contact(enrollments=enrolled("onboarding", "completed", finished=True)),
        contact(enrollments=enrolled("onboarding", "active", "hello")),
    ),
    # SPEC §3 reached_step
    Case(
        {"reached_step": {"sequence": "onboarding", "step": "tips"}},
        contact(enrollments=enrolled("onboarding", "active", "hello", "tips")),
        contact(enrollments=enrolled("onboarding", "active", "hello")),
    ),
    # SPEC §3 opened_email: an email.opened fact whose detail matches the given keys.
    Case(
        {"opened_email": {"sequence": "onboarding", "step": "hello"}},
        contact(fact("email.opened", sequence="onboarding", step="hello", message=7)),
        contact(fact("email.opened", sequence="onboarding", step="tips", message=8)),
    ),
    # SPEC §3 clicked_link: link.clicked only (a split-link click is clicked_split_link).
    Case(
        {"clicked_link": "offer"},
        contact(fact("link.clicked", "offer")),
        contact(fact("split_link.clicked", "offer", variant="a")),
    ),
    # SPEC §3 clicked_split_link: split_link.clicked of any variant.
    Case(
        {"clicked_split_link": "offer"},
        contact(fact("split_link.clicked", "offer", variant="b")),
        contact(fact("link.clicked", "offer")),
    ),
    # SPEC §3 visited_page
    Case(
        {"visited_page": "sales-page"},
        contact(fact("page.visited", "sales-page")),
        contact(fact("page.visited", "home")),
    ),
    # SPEC §3 bought_product: history; a later refund does not undo the purchase.
    Case(
        {"bought_product": "course-101"},
        contact(fact("product.purchased", "course-101", 2 * DAY), fact("product.refunded", "course-101")),
        contact(fact("product.purchased", "coaching")),
    ),
    # SPEC §3 refunded_product: a full refund; a partial one is not.
    Case(
        {"refunded_product": "course-101"},
        contact(fact("product.refunded", "course-101", amount=97)),
        contact(fact("product.partially_refunded", "course-101", amount=10)),
    ),
    # SPEC §3 partially_refunded_product
    Case(
        {"partially_refunded_product": "course-101"},
        contact(fact("product.partially_refunded", "course-101", amount=10)),
        contact(fact("product.refunded", "course-101")),
    ),
    # SPEC §3 canceled_subscription: a request to cancel is not a cancellation.
    Case(
        {"canceled_subscription": "coaching"},
        contact(fact("subscription.canceled", "coaching")),
        contact(fact("subscription.cancellation_requested", "coaching")),
    ),
    # SPEC §3 active_subscription: bought, and not canceled after the latest purchase.
    Case(
        {"active_subscription": "coaching"},
        contact(
            fact("product.purchased", "coaching", 30 * DAY),
            fact("subscription.canceled", "coaching", 20 * DAY),
            fact("product.purchased", "coaching", 2 * DAY),
        ),
        contact(fact("product.purchased", "coaching", 30 * DAY), fact("subscription.canceled", "coaching")),
    ),
    # SPEC §3 played_video: a completed video counts as played.
    Case(
        {"played_video": "intro"},
        contact(fact("video.completed", "intro")),
        contact(fact("video.played", "outro")),
    ),
    # SPEC §3 completed_video
    Case(
        {"completed_video": "intro"},
        contact(fact("video.completed", "intro")),
        contact(fact("video.played", "intro")),
    ),
    # SPEC §3 score: {op, value}
    Case({"score": {"op": "gte", "value": 20}}, contact(score=20), contact(score=19)),
    # SPEC §3 has_membership: the level's latest grant/revoke is a grant.
    Case(
        {"has_membership": {"membership": "academy", "level": "pro"}},
        contact(fact("membership.granted", "academy", level="pro")),
        contact(
            fact("membership.granted", "academy", 2 * DAY, level="pro"),
            fact("membership.revoked", "academy", level="pro"),
        ),
    ),
    # SPEC §3 completed_level
    Case(
        {"completed_level": {"membership": "academy", "level": "basic"}},
        contact(fact("membership.level_completed", "academy", level="basic")),
        contact(fact("membership.level_completed", "academy", level="pro")),
    ),
    # SPEC §3 webinar_registered … webinar_left_early: a fact of that type for the webinar.
    Case(
        {"webinar_registered": "launch"},
        contact(fact("webinar.registered", "launch")),
        contact(fact("webinar.registered", "other")),
    ),
    Case(
        {"webinar_attended": "launch"},
        contact(fact("webinar.attended", "launch")),
        contact(fact("webinar.registered", "launch"), fact("webinar.missed", "launch")),
    ),
    Case(
        {"webinar_missed": "launch"},
        contact(fact("webinar.missed", "launch")),
        contact(fact("webinar.attended", "launch")),
    ),
    Case(
        {"webinar_watched_fully": "launch"},
        contact(fact("webinar.watched_fully", "launch")),
        contact(fact("webinar.left_early", "launch")),
    ),
    Case(
        {"webinar_left_early": "launch"},
        contact(fact("webinar.left_early", "launch")),
        contact(fact("webinar.watched_fully", "launch")),
    ),
    # SPEC §3 calendar_active: the latest calendar fact is a registration.
    Case(
        {"calendar_active": "discovery-call"},
        contact(fact("calendar.registered", "discovery-call")),
        contact(
            fact("calendar.registered", "discovery-call", 2 * DAY),
            fact("calendar.completed", "discovery-call"),
        ),
    ),
    # SPEC §3 calendar_completed / calendar_canceled: such a fact exists.
    Case(
        {"calendar_completed": "discovery-call"},
        contact(fact("calendar.completed", "discovery-call")),
        contact(fact("calendar.registered", "discovery-call")),
    ),
    Case(
        {"calendar_canceled": "discovery-call"},
        contact(fact("calendar.canceled", "discovery-call")),
        contact(fact("calendar.completed", "discovery-call")),
    ),
    # SPEC §3 completed_survey
    Case(
        {"completed_survey": "quiz"},
        contact(fact("survey.completed", "quiz", answers={}, score=1)),
        contact(fact("survey.completed", "poll", answers={}, score=1)),
    ),
    # SPEC §3 survey_answer: the latest answer, case-insensitive.
    Case(
        {"survey_answer": {"survey": "quiz", "question": "goal", "is": "growth"}},
        contact(fact("survey.completed", "quiz", answers={"goal": "Growth"})),
        contact(fact("survey.completed", "quiz", answers={"goal": "fun"})),
    ),
    # SPEC §3 survey_score
    Case(
        {"survey_score": {"survey": "quiz", "op": "gt", "value": 5}},
        contact(fact("survey.completed", "quiz", score=6)),
        contact(fact("survey.completed", "quiz", score=5)),
    ),
    # SPEC §3 is_affiliate: true = of any product.
    Case(
        {"is_affiliate": True},
        contact(fact("affiliate.joined", "coaching")),
        contact(fact("jv_broker.joined", "coaching")),
    ),
    # SPEC §3 is_jv_broker: a product name = of that product.
    Case(
        {"is_jv_broker": "course-101"},
        contact(fact("jv_broker.joined", "course-101")),
        contact(fact("jv_broker.joined", "coaching")),
    ),
    # SPEC §3 engagement: 3 recent opens/clicks are medium; older than 90 days do not count.
    Case(
        {"engagement": {"op": "gte", "value": "medium"}},
        contact(*opens(2), fact("link.clicked", "offer")),
        contact(*opens(2), *opens(5, ago=91 * DAY)),
    ),
    # SPEC §3 all / any / not
    Case(
        {"all": [{"has_tag": "a"}, {"on_list": "newsletter"}]},
        contact(tags=frozenset({"a"}), lists=frozenset({"newsletter"})),
        contact(tags=frozenset({"a"})),
    ),
    Case(
        {"any": [{"has_tag": "a"}, {"on_list": "newsletter"}]},
        contact(lists=frozenset({"newsletter"})),
        contact(tags=frozenset({"b"})),
    ),
    Case({"not": {"has_tag": "dnc"}}, contact(), contact(tags=frozenset({"dnc"}))),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_condition_holds_for_one_contact_and_not_another(case: Case) -> None:
    # SPEC §3: each condition kind, evaluated on a contact that satisfies it and one that does not.
    condition = cond(case.raw)
    assert evaluate(condition, case.holds, NOW) is True
    assert evaluate(condition, case.fails, NOW) is False
    assert explain_false(condition, case.holds, NOW) is None
    reason = explain_false(condition, case.fails, NOW)
    assert isinstance(reason, str) and reason


def test_every_condition_class_has_a_rule_and_a_case() -> None:
    # SPEC §3: no condition of the model is left without a rule (nor without a test above).
    covered = {type(cond(case.raw)) for case in CASES}
    assert covered == set(CONDITION_CLASSES), set(CONDITION_CLASSES) - covered
    for case in CASES:
        node = cond(case.raw)
        assert isinstance(evaluate(node, contact(), NOW), bool), type(node).__name__
        reason = explain_false(node, contact(), NOW)
        assert reason is None or isinstance(reason, str)


def test_an_unknown_node_is_refused() -> None:
    # A node class added to the model without a rule must fail loudly, not evaluate to False.
    class Unknown(ConditionModel):
        kind: ClassVar[str] = "unknown"

    with pytest.raises(TypeError, match="Unknown"):
        evaluate(cast(Any, Unknown()), contact(), NOW)
    with pytest.raises(TypeError, match="Unknown"):
        explain_false(cast(Any, Unknown()), contact(), NOW)
    nested = AllOf.model_construct(items=(HasTag(arg="a"), cast(Any, Unknown())))  # the model refuses it
    with pytest.raises(TypeError):
        evaluate(nested, contact(tags=frozenset({"a"})), NOW)


# --------------------------------------------------------------------------------------------------
# field: {key, op, value} (SPEC §3; docs/conditions.md "Fields")


@pytest.mark.parametrize(
    ("fields", "key", "op", "value", "expected"),
    [
        # numbers compare numerically, numeric text too
        ({"age": 30}, "age", "gt", 20, True),
        ({"age": 30}, "age", "gt", 30, False),
        ({"age": 30}, "age", "gte", 30, True),
        ({"age": 30}, "age", "lte", 29.5, False),
        ({"age": 30.0}, "age", "eq", 30, True),
        ({"age": "30"}, "age", "lt", 100, True),  # "30" < "100" would be False as text
        ({"age": 9}, "age", "lt", "10", True),
        ({"age": 30}, "age", "ne", 31, True),
        # dates as dates: ISO text or date objects
        ({"birthday": "2000-01-02"}, "birthday", "lt", "2000-02-01", True),
        ({"birthday": "2000-01-02"}, "birthday", "gt", "1999-12-31", True),
        ({"birthday": date(2000, 1, 2)}, "birthday", "eq", "2000-01-02", True),
        ({"birthday": datetime(2000, 1, 2, 9, 30)}, "birthday", "gte", "2000-01-02", True),
        # text: case-insensitive eq / ne / contains
        ({"plan": "Pro Plan"}, "plan", "eq", "pro plan", True),
        ({"plan": "Pro Plan"}, "plan", "ne", "PRO PLAN", False),
        ({"plan": "Pro Plan"}, "plan", "contains", "PRO", True),
        ({"plan": "Pro Plan"}, "plan", "contains", "basic", False),
        ({"plan": "b"}, "plan", "gt", "A", True),
        # a list value: contains means one item equals
        ({"interests": ["Yoga", "Tea"]}, "interests", "contains", "yoga", True),
        ({"interests": ["Yoga", "Tea"]}, "interests", "contains", "yo", False),
        # booleans, with yes/no text
        ({"opted_in": True}, "opted_in", "eq", True, True),
        ({"opted_in": "yes"}, "opted_in", "eq", True, True),
        ({"opted_in": False}, "opted_in", "ne", True, True),
        ({"opted_in": True}, "opted_in", "gt", False, False),
        # values of no common type: only ne holds
        ({"age": "unknown"}, "age", "gt", 5, False),
        ({"age": "unknown"}, "age", "eq", 5, False),
        ({"age": "unknown"}, "age", "ne", 5, True),
        # exists: any value, even 0 or false
        ({"age": 0}, "age", "exists", None, True),
        ({"opted_in": False}, "opted_in", "exists", None, True),
    ],
)
def test_field_comparisons(fields: dict[str, Any], key: str, op: str, value: Any, expected: bool) -> None:
    # SPEC §3 field: numbers numerically, dates as dates, text case-insensitively.
    condition = cond({"field": {"key": key, "op": op, "value": value}})
    assert evaluate(condition, contact(fields=fields), NOW) is expected


@pytest.mark.parametrize("op", ["eq", "ne", "lt", "lte", "gt", "gte", "contains", "exists"])
@pytest.mark.parametrize("stored", [{}, {"plan": None}, {"plan": "  "}, {"plan": []}])
def test_a_missing_field_is_false_except_for_ne(op: str, stored: dict[str, Any]) -> None:
    # SPEC §3 field (decision): a missing value is false for every op but ne; exists is false.
    condition = cond({"field": {"key": "plan", "op": op, "value": None if op == "exists" else "pro"}})
    assert evaluate(condition, contact(fields=stored), NOW) is (op == "ne")


def test_field_reads_contact_attributes_and_prefers_custom_fields() -> None:
    # SPEC §3 field (decision): a key the contact has among `fields` first, else its attribute.
    first_name = cond({"field": {"key": "first_name", "op": "eq", "value": "ann"}})
    assert evaluate(first_name, contact(first_name="Ann"), NOW)
    assert not evaluate(first_name, contact(first_name="Bob"), NOW)
    owner = cond({"field": {"key": "owner", "op": "eq", "value": "sam"}})
    assert evaluate(owner, contact(owner="ann", fields={"owner": "Sam"}), NOW)
    assert not evaluate(cond({"field": {"key": "phone", "op": "exists"}}), contact(), NOW)


# --------------------------------------------------------------------------------------------------
# The other decisions of docs/conditions.md


def test_email_domain_list_and_missing_email() -> None:
    # SPEC §3 email_domain: one of the listed; no email, no domain.
    condition = cond({"email_domain": ["a.test", "B.test"]})
    assert evaluate(condition, contact(email="x@b.test"), NOW)
    assert not evaluate(condition, contact(phone="+15550100"), NOW)
    assert "no email address" in (explain_false(condition, contact(), NOW) or "")


def test_opened_email_matching() -> None:
    # SPEC §3 opened_email {sequence?, step?, broadcast?}: empty means any email.
    broadcast_open = contact(fact("email.opened", broadcast="black-friday", message=1))
    assert evaluate(cond({"opened_email": {}}), broadcast_open, NOW)
    assert not evaluate(cond({"opened_email": {}}), contact(fact("email.delivered", message=1)), NOW)
    assert evaluate(cond({"opened_email": {"broadcast": "black-friday"}}), broadcast_open, NOW)
    assert not evaluate(cond({"opened_email": {"sequence": "onboarding"}}), broadcast_open, NOW)
    sequence_open = contact(fact("email.opened", sequence="onboarding", step="tips", message=2))
    assert evaluate(cond({"opened_email": {"sequence": "onboarding"}}), sequence_open, NOW)


def test_enrollment_conditions_without_an_enrollment() -> None:
    # SPEC §3 in_sequence / finished_sequence / reached_step on a contact never enrolled.
    never = contact()
    assert not evaluate(cond({"in_sequence": "onboarding"}), never, NOW)
    assert not evaluate(cond({"finished_sequence": "onboarding"}), never, NOW)
    assert not evaluate(cond({"reached_step": {"sequence": "onboarding", "step": "hello"}}), never, NOW)
    # S1: every open status counts as in the sequence.
    for status in ("draft", "active", "queued", "blocked", "paused", "finished"):
        assert evaluate(cond({"in_sequence": "s"}), contact(enrollments=enrolled("s", status)), NOW)
    for status in ("completed", "canceled", "excluded", "bounced"):
        assert not evaluate(cond({"in_sequence": "s"}), contact(enrollments=enrolled("s", status)), NOW)


def test_active_subscription_edges() -> None:
    # SPEC §3 active_subscription (decision): only a later subscription.canceled ends it.
    active = cond({"active_subscription": "coaching"})
    assert not evaluate(active, contact(), NOW)
    assert not evaluate(active, contact(fact("subscription.canceled", "coaching")), NOW)
    refunded = contact(fact("product.purchased", "coaching", 2 * DAY), fact("product.refunded", "coaching"))
    assert evaluate(active, refunded, NOW)
    other = contact(fact("product.purchased", "coaching", 2 * DAY), fact("subscription.canceled", "course"))
    assert evaluate(active, other, NOW)
    # same instant: the order of the contact's facts decides
    same = contact(fact("subscription.canceled", "coaching"), fact("product.purchased", "coaching"))
    assert evaluate(active, same, NOW)
    canceled = contact(fact("product.purchased", "coaching"), fact("subscription.canceled", "coaching"))
    assert not evaluate(active, canceled, NOW)
    assert "canceled after its latest purchase" in (explain_false(active, canceled, NOW) or "")


def test_has_membership_keeps_a_state_per_level() -> None:
    # SPEC §3 has_membership {membership, level?} (decision): per level; a revoke without level ends all.
    basic, pro = (cond({"has_membership": {"membership": "academy", "level": lv}}) for lv in ("basic", "pro"))
    any_level = cond({"has_membership": "academy"})
    upgraded = contact(
        fact("membership.granted", "academy", 3 * DAY, level="basic"),
        fact("membership.granted", "academy", 2 * DAY, level="pro"),
        fact("membership.revoked", "academy", DAY, level="basic"),
    )
    assert evaluate(any_level, upgraded, NOW)
    assert evaluate(pro, upgraded, NOW)
    assert not evaluate(basic, upgraded, NOW)
    removed = contact(*upgraded.facts, fact("membership.revoked", "academy", timedelta(hours=1)))
    assert not evaluate(any_level, removed, NOW)
    assert not evaluate(pro, removed, NOW)
    regranted = contact(
        *removed.facts, fact("membership.granted", "academy", timedelta(minutes=1), level="pro")
    )
    assert evaluate(pro, regranted, NOW)
    # a grant without a level is the membership at no particular level
    plain = contact(fact("membership.granted", "academy"))
    assert evaluate(any_level, plain, NOW)
    assert not evaluate(pro, plain, NOW)
    assert not evaluate(any_level, contact(fact("membership.granted", "vault")), NOW)


def test_calendar_state_and_history() -> None:
    # SPEC §3 calendar_active is the latest state; calendar_canceled is history.
    rebooked = contact(
        fact("calendar.registered", "call", 3 * DAY),
        fact("calendar.canceled", "call", 2 * DAY),
        fact("calendar.registered", "call", DAY),
    )
    assert evaluate(cond({"calendar_active": "call"}), rebooked, NOW)
    assert evaluate(cond({"calendar_canceled": "call"}), rebooked, NOW)
    assert not evaluate(cond({"calendar_completed": "call"}), rebooked, NOW)
    assert not evaluate(cond({"calendar_active": "other"}), rebooked, NOW)


def _answer(test: str, value: Any) -> ConditionNode:
    return cond({"survey_answer": {"survey": "quiz", "question": "goal", test: value}})


def test_survey_answer_reads_the_latest_answer() -> None:
    # SPEC §3 survey_answer: the latest survey.completed of that survey decides.
    changed_mind = contact(
        fact("survey.completed", "quiz", 2 * DAY, answers={"goal": "growth"}),
        fact("survey.completed", "quiz", DAY, answers={"goal": "Fun"}),
        fact("survey.completed", "poll", timedelta(hours=1), answers={"goal": "growth"}),
    )
    assert evaluate(_answer("is", "fun"), changed_mind, NOW)
    assert not evaluate(_answer("is", "growth"), changed_mind, NOW)
    assert evaluate(_answer("is_not", "growth"), changed_mind, NOW)
    assert evaluate(_answer("contains", "U"), changed_mind, NOW)
    assert evaluate(_answer("not_contains", "row"), changed_mind, NOW)


def test_survey_answer_with_several_choices_and_numbers() -> None:
    # SPEC §3 survey_answer (decision): a list answer `is` X when one choice is X.
    several = contact(fact("survey.completed", "quiz", answers={"goal": ["Growth", "Leads"]}))
    assert evaluate(_answer("is", "leads"), several, NOW)
    assert not evaluate(_answer("is", "lead"), several, NOW)
    assert evaluate(_answer("contains", "lead"), several, NOW)
    assert evaluate(_answer("is_not", "fun"), several, NOW)
    assert not evaluate(_answer("not_contains", "grow"), several, NOW)
    numeric = contact(fact("survey.completed", "quiz", answers={"goal": 3}))
    assert evaluate(_answer("is", 3), numeric, NOW)
    assert evaluate(_answer("is", "3"), numeric, NOW)


@pytest.mark.parametrize("answers", [None, {}, {"goal": None}, {"goal": ""}, {"goal": []}, {"other": "x"}])
def test_a_missing_survey_answer_is_false_except_for_negations(answers: dict[str, Any] | None) -> None:
    # SPEC §3 survey_answer (decision): like a missing field, only is_not / not_contains hold.
    who = contact() if answers is None else contact(fact("survey.completed", "quiz", answers=answers))
    assert not evaluate(_answer("is", "growth"), who, NOW)
    assert not evaluate(_answer("contains", "g"), who, NOW)
    assert evaluate(_answer("is_not", "growth"), who, NOW)
    assert evaluate(_answer("not_contains", "g"), who, NOW)


def test_survey_score() -> None:
    # SPEC §3 survey_score: against the latest completion; no score: false but for ne.
    retaken = contact(
        fact("survey.completed", "quiz", 2 * DAY, score=9),
        fact("survey.completed", "quiz", DAY, score="4"),
    )
    assert evaluate(cond({"survey_score": {"survey": "quiz", "op": "eq", "value": 4}}), retaken, NOW)
    assert not evaluate(cond({"survey_score": {"survey": "quiz", "op": "gt", "value": 5}}), retaken, NOW)
    for who in (contact(), contact(fact("survey.completed", "quiz", answers={}))):
        assert not evaluate(cond({"survey_score": {"survey": "quiz", "op": "lt", "value": 5}}), who, NOW)
        assert evaluate(cond({"survey_score": {"survey": "quiz", "op": "ne", "value": 5}}), who, NOW)


def test_partner_conditions_true_false_and_product() -> None:
    # SPEC §3 is_affiliate / is_jv_broker: true = any product, false = none, a name = that product.
    affiliate = contact(fact("affiliate.joined", "coaching"))
    assert evaluate(cond({"is_affiliate": True}), affiliate, NOW)
    assert not evaluate(cond({"is_affiliate": False}), affiliate, NOW)
    assert evaluate(cond({"is_affiliate": False}), contact(), NOW)
    assert evaluate(cond({"is_affiliate": "coaching"}), affiliate, NOW)
    assert not evaluate(cond({"is_affiliate": "course-101"}), affiliate, NOW)
    assert not evaluate(cond({"is_jv_broker": True}), affiliate, NOW)
    assert evaluate(cond({"is_jv_broker": True}), contact(fact("jv_broker.joined", "course-101")), NOW)


@pytest.mark.parametrize(
    ("count", "level"), [(0, "none"), (1, "low"), (2, "low"), (3, "medium"), (5, "medium"), (6, "high")]
)
def test_engagement_levels(count: int, level: str) -> None:
    # SPEC §3 engagement: 0 none, 1–2 low, 3–5 medium, 6+ high.
    assert engagement_level(contact(*opens(count)), NOW) == level
    assert evaluate(cond({"engagement": {"op": "eq", "value": level}}), contact(*opens(count)), NOW)


def test_engagement_window_edges() -> None:
    # SPEC §3 engagement: "the last 90 days", [now - 90 days, now]; later facts are not yet known.
    assert engagement_level(contact(*opens(1, ago=ENGAGEMENT_WINDOW)), NOW) == "low"
    assert engagement_level(contact(*opens(1, ago=ENGAGEMENT_WINDOW + timedelta(minutes=1))), NOW) == "none"
    assert engagement_level(contact(*opens(6, ago=-DAY)), NOW) == "none"
    # clicks count, other email events do not
    clicks = contact(fact("link.clicked", "offer"), fact("email.delivered"), fact("email.replied"))
    assert engagement_level(clicks, NOW) == "low"
    # naive instants are UTC (T1)
    naive = contact(FactView("email.opened", None, (NOW - DAY).replace(tzinfo=None)))
    assert engagement_level(naive, NOW) == "low"
    assert engagement_level(contact(*opens(1)), NOW.replace(tzinfo=None)) == "low"


# --------------------------------------------------------------------------------------------------
# explain_false (SPEC X5)


def test_explain_names_the_tag_and_the_product() -> None:
    # SPEC X5: the sentence names what was missing.
    nobody = contact()
    assert explain_false(cond({"has_tag": "vip"}), nobody, NOW) == "the contact does not have the tag 'vip'"
    assert explain_false(cond({"bought_product": "course-101"}), nobody, NOW) == "no purchase of 'course-101'"


def test_explain_names_the_first_failing_leaf() -> None:
    # SPEC X5: in an `all`, the first item that failed is the reason.
    condition = cond({"all": [{"on_list": "newsletter"}, {"has_tag": "vip"}, {"bought_product": "x"}]})
    who = contact(lists=frozenset({"newsletter"}))
    assert explain_false(condition, who, NOW) == "the contact does not have the tag 'vip'"


def test_explain_under_not_says_what_held() -> None:
    # SPEC X5: `not {has_tag: dnc}` fails because the contact has the tag.
    condition = cond({"all": [{"on_list": "newsletter"}, {"not": {"has_tag": "dnc"}}]})
    who = contact(lists=frozenset({"newsletter"}), tags=frozenset({"dnc"}))
    assert explain_false(condition, who, NOW) == "the contact has the tag 'dnc'"
    both = cond({"not": {"all": [{"has_tag": "dnc"}, {"bought_product": "x"}]}})
    reason = explain_false(both, contact(fact("product.purchased", "x"), tags=frozenset({"dnc"})), NOW)
    assert reason == "the contact has the tag 'dnc' and the contact bought 'x'"


def test_explain_any_gives_every_reason() -> None:
    # SPEC X5: when no item of an `any` held, each one's reason is given.
    condition = cond({"any": [{"has_tag": "vip"}, {"bought_product": "course-101"}]})
    reason = explain_false(condition, contact(), NOW)
    assert reason == "the contact does not have the tag 'vip' and no purchase of 'course-101'"


def test_explain_shows_the_values_compared() -> None:
    # SPEC X5: comparisons say what the contact's value was.
    field = cond({"field": {"key": "plan", "op": "eq", "value": "pro"}})
    assert explain_false(field, contact(fields={"plan": "basic"}), NOW) == (
        "field 'plan' is 'basic', not equal to 'pro'"
    )
    assert explain_false(field, contact(), NOW) == "field 'plan' is empty, not equal to 'pro'"
    score = cond({"score": {"op": "gte", "value": 20}})
    assert explain_false(score, contact(score=12), NOW) == "the contact's score is 12, less than 20"
    engagement = cond({"engagement": {"op": "gte", "value": "medium"}})
    assert explain_false(engagement, contact(*opens(1)), NOW) == (
        "the contact's engagement is low (1 open or click in the last 90 days), lower than medium"
    )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_explain_under_not_for_every_kind(case: Case) -> None:
    # SPEC X5: every leaf can also say what held (its reason under `not`).
    negated = Not(item=cond(case.raw))
    assert explain_false(negated, case.fails, NOW) is None
    reason = explain_false(negated, case.holds, NOW)
    assert isinstance(reason, str) and reason


# --------------------------------------------------------------------------------------------------
# Properties


TAGS = ("a", "b", "c", "d")
LISTS = ("newsletter", "customers")
PRODUCTS = ("course-101", "coaching")

leaves = st.one_of(
    st.builds(lambda tag: {"has_tag": tag}, st.sampled_from(TAGS)),
    st.builds(lambda name: {"on_list": name}, st.sampled_from(LISTS)),
    st.builds(lambda name: {"bought_product": name}, st.sampled_from(PRODUCTS)),
    st.builds(lambda name: {"active_subscription": name}, st.sampled_from(PRODUCTS)),
    st.builds(
        lambda op, level: {"engagement": {"op": op, "value": level}},
        st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte"]),
        st.sampled_from(ENGAGEMENT_ORDER),
    ),
    st.builds(
        lambda op, value: {"field": {"key": "age", "op": op, "value": value}},
        st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte"]),
        st.integers(0, 5),
    ),
)
raw_conditions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(lambda items: {"all": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"any": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda item: {"not": item}, inner),
    ),
    max_leaves=8,
)
history = st.lists(
    st.builds(
        lambda kind, key, days: fact(kind, key, timedelta(days=days)),
        st.sampled_from(["product.purchased", "subscription.canceled", "email.opened", "link.clicked"]),
        st.sampled_from(PRODUCTS),
        st.integers(-2, 120),
    ),
    max_size=10,
).map(lambda facts: tuple(sorted(facts, key=lambda item: item.at)))
contacts = st.builds(
    lambda tags, lists, facts, fields: contact(*facts, tags=tags, lists=lists, fields=fields),
    st.frozensets(st.sampled_from(TAGS)),
    st.frozensets(st.sampled_from(LISTS)),
    history,
    st.one_of(st.just({}), st.builds(lambda age: {"age": age}, st.integers(0, 5))),
)


@PROPERTY
@given(raw_conditions, contacts)
def test_not_inverts(raw: dict[str, Any], who: ContactView) -> None:
    # SPEC §3 not
    condition = cond(raw)
    assert evaluate(Not(item=condition), who, NOW) is not evaluate(condition, who, NOW)


@PROPERTY
@given(raw_conditions, contacts)
def test_all_or_any_of_one_item_is_the_item(raw: dict[str, Any], who: ContactView) -> None:
    # SPEC §3 all / any
    condition = cond(raw)
    expected = evaluate(condition, who, NOW)
    assert evaluate(AllOf(items=(condition,)), who, NOW) is expected
    assert evaluate(AnyOf(items=(condition,)), who, NOW) is expected


@PROPERTY
@given(
    st.lists(st.sampled_from(TAGS), min_size=1, max_size=4),
    st.frozensets(st.sampled_from(TAGS)),
)
def test_de_morgan_over_tags(wanted: list[str], has: frozenset[str]) -> None:
    # SPEC §3 all / any / not: not(all) == any(not …) and not(any) == all(not …).
    who = contact(tags=has)
    tags = tuple(HasTag(arg=tag) for tag in wanted)
    negated = tuple(Not(item=tag) for tag in tags)
    assert evaluate(Not(item=AllOf(items=tags)), who, NOW) is evaluate(AnyOf(items=negated), who, NOW)
    assert evaluate(Not(item=AnyOf(items=tags)), who, NOW) is evaluate(AllOf(items=negated), who, NOW)
    assert evaluate(AllOf(items=tags), who, NOW) is set(wanted).issubset(has)


@PROPERTY
@given(raw_conditions, contacts)
def test_explain_is_none_exactly_when_the_condition_holds(raw: dict[str, Any], who: ContactView) -> None:
    # SPEC X5: a reason is given if and only if the condition is false.
    condition = cond(raw)
    reason = explain_false(condition, who, NOW)
    assert (reason is None) is evaluate(condition, who, NOW)
    assert reason is None or reason.strip() == reason != ""


@PROPERTY
@given(st.integers(0, 12), st.integers(0, 12), st.sampled_from(ENGAGEMENT_ORDER))
def test_engagement_is_monotone_in_recent_opens(fewer: int, more: int, level: str) -> None:
    # SPEC §3 engagement: more recent opens never lower the level.
    fewer, more = sorted((fewer, more))
    low, high = contact(*opens(fewer)), contact(*opens(more))
    assert ENGAGEMENT_ORDER.index(engagement_level(low, NOW)) <= ENGAGEMENT_ORDER.index(
        engagement_level(high, NOW)
    )
    at_least = cond({"engagement": {"op": "gte", "value": level}})
    assert not evaluate(at_least, low, NOW) or evaluate(at_least, high, NOW)


@PROPERTY
@given(
    contacts, st.lists(st.integers(91, 3650), max_size=8), st.sampled_from(["email.opened", "link.clicked"])
)
def test_facts_older_than_90_days_never_raise_engagement(
    who: ContactView, days: list[int], kind: str
) -> None:
    # SPEC §3 engagement: only the last 90 days count.
    old = tuple(fact(kind, "offer", timedelta(days=age, minutes=1)) for age in days)
    older = replace(who, facts=tuple(sorted(old + who.facts, key=lambda item: item.at)))
    assert engagement_level(older, NOW) == engagement_level(who, NOW)
