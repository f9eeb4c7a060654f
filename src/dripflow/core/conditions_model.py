"""The condition language of SPEC §3 as a small, typed, immutable tree.

A condition in the file is a single-key mapping; ``all``/``any``/``not`` combine them::

    {all: [{on_list: newsletter}, {not: {has_tag: customer}}]}

parses to ``AllOf(items=(OnList(arg='newsletter'), Not(item=HasTag(arg='customer'))))``.

The tree, for the evaluator:

* ``AllOf(items)``, ``AnyOf(items)`` — tuples of conditions; ``Not(item)``.
* one class per leaf key, each with ``kind`` (the key, a ``ClassVar``) and ``arg`` (its typed
  argument; the file's key is the field's alias). Plain-name arguments are ``str``; the others are
  small models: ``FieldTest``, ``StepRef``, ``EmailRef``, ``NumberTest``, ``EngagementTest``,
  ``MembershipRef``, ``LevelRef``, ``SurveyAnswerTest``, ``SurveyScoreTest``.
* ``refers_to`` (a ``ClassVar``) names the declared thing a plain-name argument must be
  (``"tag"``, ``"list"`` …); the validator uses it for reference checks.

Match on it directly::

    match cond:
        case AllOf(items=items): ...
        case Not(item=inner): ...
        case HasTag(arg=tag): ...
        case FieldIs(arg=FieldTest(key=key, op=op, value=value)): ...

Every node is a frozen pydantic model (hashable), and ``model_dump(mode="json")`` gives back the
file's form. ``Condition`` is the annotated union to use in other models' fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import BeforeValidator, Field, PlainValidator, model_validator

from dripflow.core.modeltypes import (
    CompareOp,
    FileModel,
    Name,
    NonEmpty,
    describe,
    did_you_mean,
    single_key,
    tagged_union,
    user_error,
)

Scalar = str | int | float | bool | None
FieldOp = Literal["eq", "ne", "lt", "lte", "gt", "gte", "contains", "exists"]
EngagementLevel = Literal["none", "low", "medium", "high"]
ENGAGEMENT_ORDER: tuple[EngagementLevel, ...] = ("none", "low", "medium", "high")
LeadStatus = Literal["active", "inactive", "blacklisted"]


def _scalar(value: object) -> Scalar:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise user_error(
        "scalar", f"must be a single value (text, a number, true or false), not {describe(value)}"
    )


ScalarValue = Annotated[Scalar, PlainValidator(_scalar)]


# --------------------------------------------------------------------------------------------------
# Arguments


class FieldTest(FileModel):
    """``field: {key, op, value}``; ``value`` is not needed with ``op: exists``."""

    key: Name
    op: FieldOp = "eq"
    value: ScalarValue = None

    @model_validator(mode="after")
    def _value_needed(self) -> Self:
        if self.op != "exists" and self.value is None:
            raise user_error("field_value", f"op '{self.op}' needs a value to compare with", at_key="value")
        return self


class NumberTest(FileModel):
    """``score: {op, value}``."""

    op: CompareOp
    value: float


class EngagementTest(FileModel):
    """``engagement: {op, value}``, levels none < low < medium < high (see ``ENGAGEMENT_ORDER``)."""

    op: CompareOp
    value: EngagementLevel


class StepRef(FileModel):
    """``{sequence, step}``."""

    sequence: Name
    step: Name


class EmailRef(FileModel):
    """``opened_email: {sequence?, step?, broadcast?}``; empty means any email."""

    sequence: Name | None = None
    step: Name | None = None
    broadcast: Name | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.step is not None and self.sequence is None:
            raise user_error(
                "email_ref", "a step is named within its sequence: give sequence too", at_key="sequence"
            )
        if self.broadcast is not None and self.sequence is not None:
            raise user_error("email_ref", "give either a sequence (and step) or a broadcast, not both")
        return self


class MembershipRef(FileModel):
    """``{membership, level?}``."""

    membership: Name
    level: Name | None = None


class LevelRef(FileModel):
    """``{membership, level}``."""

    membership: Name
    level: Name


class SurveyAnswerTest(FileModel):
    """``survey_answer: {survey, question, is | is_not | contains | not_contains}`` — exactly one test."""

    survey: Name
    question: Name
    is_: ScalarValue = Field(None, alias="is")
    is_not: ScalarValue = None
    contains: ScalarValue = None
    not_contains: ScalarValue = None

    @model_validator(mode="after")
    def _one_test(self) -> Self:
        given = [
            name for name in ("is_", "is_not", "contains", "not_contains") if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise user_error("survey_answer", "give exactly one of is, is_not, contains, not_contains")
        return self

    @property
    def test(self) -> tuple[Literal["is", "is_not", "contains", "not_contains"], Scalar]:
        """The one comparison given, as ``(op, value)``."""
        if self.is_ is not None:
            return "is", self.is_
        if self.is_not is not None:
            return "is_not", self.is_not
        if self.contains is not None:
            return "contains", self.contains
        return "not_contains", self.not_contains


class SurveyScoreTest(FileModel):
    """``survey_score: {survey, op, value}``."""

    survey: Name
    op: CompareOp
    value: float


def _domains(value: object) -> object:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple):
        return tuple(item.strip().lower().lstrip("@") if isinstance(item, str) else item for item in value)
    return value


def _partner(value: object) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise user_error("partner", f"must be true or a product name, not {describe(value)}")


EmailDomains = Annotated[tuple[Name, ...], BeforeValidator(_domains), NonEmpty]
PartnerArg = Annotated[bool | str, PlainValidator(_partner)]


# --------------------------------------------------------------------------------------------------
# Nodes


class ConditionModel(FileModel):
    """Base of every node: ``kind`` is the file key; ``refers_to`` the declared thing ``arg`` names."""

    kind: ClassVar[str]
    refers_to: ClassVar[str | None] = None

    def plain_name(self) -> str | None:
        """``arg`` when it is the plain name of a declared thing (see ``refers_to``), else None."""
        value = getattr(self, "arg", None)
        return value if self.refers_to is not None and isinstance(value, str) else None


class AllOf(ConditionModel):
    """``all: [...]`` — every item holds."""

    kind: ClassVar[str] = "all"
    items: Annotated[tuple[Condition, ...], NonEmpty] = Field(alias="all")


class AnyOf(ConditionModel):
    """``any: [...]`` — at least one item holds."""

    kind: ClassVar[str] = "any"
    items: Annotated[tuple[Condition, ...], NonEmpty] = Field(alias="any")


class Not(ConditionModel):
    """``not: {...}``."""

    kind: ClassVar[str] = "not"
    item: Condition = Field(alias="not")


class OnList(ConditionModel):
    kind: ClassVar[str] = "on_list"
    refers_to: ClassVar[str | None] = "list"
    arg: Name = Field(alias="on_list")


class HasTag(ConditionModel):
    kind: ClassVar[str] = "has_tag"
    refers_to: ClassVar[str | None] = "tag"
    arg: Name = Field(alias="has_tag")


class FieldIs(ConditionModel):
    """``field: {key, op, value}`` — a custom field (or a contact attribute such as ``first_name``)."""

    kind: ClassVar[str] = "field"
    arg: FieldTest = Field(alias="field")


class Source(ConditionModel):
    kind: ClassVar[str] = "source"
    arg: Name = Field(alias="source")


class EmailDomain(ConditionModel):
    """``email_domain: a.test`` or a list; normalised to lower-case names without ``@``."""

    kind: ClassVar[str] = "email_domain"
    arg: EmailDomains = Field(alias="email_domain")


class IsLeadStatus(ConditionModel):
    kind: ClassVar[str] = "lead_status"
    arg: LeadStatus = Field(alias="lead_status")


class FilledForm(ConditionModel):
    kind: ClassVar[str] = "filled_form"
    refers_to: ClassVar[str | None] = "form"
    arg: Name = Field(alias="filled_form")


class InSequence(ConditionModel):
    kind: ClassVar[str] = "in_sequence"
    refers_to: ClassVar[str | None] = "sequence"
    arg: Name = Field(alias="in_sequence")


class FinishedSequence(ConditionModel):
    kind: ClassVar[str] = "finished_sequence"
    refers_to: ClassVar[str | None] = "sequence"
    arg: Name = Field(alias="finished_sequence")


class ReachedStep(ConditionModel):
    kind: ClassVar[str] = "reached_step"
    arg: StepRef = Field(alias="reached_step")


class OpenedEmail(ConditionModel):
    kind: ClassVar[str] = "opened_email"
    arg: EmailRef = Field(alias="opened_email")


class ClickedLink(ConditionModel):
    kind: ClassVar[str] = "clicked_link"
    refers_to: ClassVar[str | None] = "link"
    arg: Name = Field(alias="clicked_link")


class ClickedSplitLink(ConditionModel):
    kind: ClassVar[str] = "clicked_split_link"
    refers_to: ClassVar[str | None] = "link"
    arg: Name = Field(alias="clicked_split_link")


class VisitedPage(ConditionModel):
    kind: ClassVar[str] = "visited_page"
    refers_to: ClassVar[str | None] = "page"
    arg: Name = Field(alias="visited_page")


class BoughtProduct(ConditionModel):
    kind: ClassVar[str] = "bought_product"
    refers_to: ClassVar[str | None] = "product"
    arg: Name = Field(alias="bought_product")


class RefundedProduct(ConditionModel):
    kind: ClassVar[str] = "refunded_product"
    refers_to: ClassVar[str | None] = "product"
    arg: Name = Field(alias="refunded_product")


class PartiallyRefundedProduct(ConditionModel):
    kind: ClassVar[str] = "partially_refunded_product"
    refers_to: ClassVar[str | None] = "product"
    arg: Name = Field(alias="partially_refunded_product")


class CanceledSubscription(ConditionModel):
    kind: ClassVar[str] = "canceled_subscription"
    refers_to: ClassVar[str | None] = "product"
    arg: Name = Field(alias="canceled_subscription")


class ActiveSubscription(ConditionModel):
    kind: ClassVar[str] = "active_subscription"
    refers_to: ClassVar[str | None] = "product"
    arg: Name = Field(alias="active_subscription")


class PlayedVideo(ConditionModel):
    kind: ClassVar[str] = "played_video"
    refers_to: ClassVar[str | None] = "video"
    arg: Name = Field(alias="played_video")


class CompletedVideo(ConditionModel):
    kind: ClassVar[str] = "completed_video"
    refers_to: ClassVar[str | None] = "video"
    arg: Name = Field(alias="completed_video")


class Score(ConditionModel):
    kind: ClassVar[str] = "score"
    arg: NumberTest = Field(alias="score")


class HasMembership(ConditionModel):
    """``has_membership: {membership, level?}`` (``has_membership: academy`` is short for any level)."""

    kind: ClassVar[str] = "has_membership"
    arg: MembershipRef = Field(alias="has_membership")

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("has_membership"), str):
            return {"has_membership": {"membership": data["has_membership"]}}
        return data


class CompletedLevel(ConditionModel):
    kind: ClassVar[str] = "completed_level"
    arg: LevelRef = Field(alias="completed_level")


class WebinarRegistered(ConditionModel):
    kind: ClassVar[str] = "webinar_registered"
    refers_to: ClassVar[str | None] = "webinar"
    arg: Name = Field(alias="webinar_registered")


class WebinarAttended(ConditionModel):
    kind: ClassVar[str] = "webinar_attended"
    refers_to: ClassVar[str | None] = "webinar"
    arg: Name = Field(alias="webinar_attended")


class WebinarMissed(ConditionModel):
    kind: ClassVar[str] = "webinar_missed"
    refers_to: ClassVar[str | None] = "webinar"
    arg: Name = Field(alias="webinar_missed")


class WebinarWatchedFully(ConditionModel):
    kind: ClassVar[str] = "webinar_watched_fully"
    refers_to: ClassVar[str | None] = "webinar"
    arg: Name = Field(alias="webinar_watched_fully")


class WebinarLeftEarly(ConditionModel):
    kind: ClassVar[str] = "webinar_left_early"
    refers_to: ClassVar[str | None] = "webinar"
    arg: Name = Field(alias="webinar_left_early")


class CalendarActive(ConditionModel):
    kind: ClassVar[str] = "calendar_active"
    refers_to: ClassVar[str | None] = "calendar"
    arg: Name = Field(alias="calendar_active")


class CalendarCompleted(ConditionModel):
    kind: ClassVar[str] = "calendar_completed"
    refers_to: ClassVar[str | None] = "calendar"
    arg: Name = Field(alias="calendar_completed")


class CalendarCanceled(ConditionModel):
    kind: ClassVar[str] = "calendar_canceled"
    refers_to: ClassVar[str | None] = "calendar"
    arg: Name = Field(alias="calendar_canceled")


class CompletedSurvey(ConditionModel):
    kind: ClassVar[str] = "completed_survey"
    refers_to: ClassVar[str | None] = "survey"
    arg: Name = Field(alias="completed_survey")


class SurveyAnswer(ConditionModel):
    kind: ClassVar[str] = "survey_answer"
    arg: SurveyAnswerTest = Field(alias="survey_answer")


class SurveyScore(ConditionModel):
    kind: ClassVar[str] = "survey_score"
    arg: SurveyScoreTest = Field(alias="survey_score")


class IsAffiliate(ConditionModel):
    """``is_affiliate: true`` (of any product), ``false`` (of none), or a product name."""

    kind: ClassVar[str] = "is_affiliate"
    arg: PartnerArg = Field(alias="is_affiliate")


class IsJvBroker(ConditionModel):
    """``is_jv_broker: true``, ``false`` or a product name."""

    kind: ClassVar[str] = "is_jv_broker"
    arg: PartnerArg = Field(alias="is_jv_broker")


class Engagement(ConditionModel):
    kind: ClassVar[str] = "engagement"
    arg: EngagementTest = Field(alias="engagement")


ConditionNode = (
    AllOf | AnyOf | Not | OnList | HasTag | FieldIs | Source | EmailDomain | IsLeadStatus | FilledForm
    | InSequence | FinishedSequence | ReachedStep | OpenedEmail | ClickedLink | ClickedSplitLink
    | VisitedPage | BoughtProduct | RefundedProduct | PartiallyRefundedProduct | CanceledSubscription
    | ActiveSubscription | PlayedVideo | CompletedVideo | Score | HasMembership | CompletedLevel
    | WebinarRegistered | WebinarAttended | WebinarMissed | WebinarWatchedFully | WebinarLeftEarly
    | CalendarActive | CalendarCompleted | CalendarCanceled | CompletedSurvey | SurveyAnswer | SurveyScore
    | IsAffiliate | IsJvBroker | Engagement
)  # fmt: skip

CONDITION_CLASSES: tuple[type[ConditionModel], ...] = get_args(ConditionNode)
CONDITION_KINDS: dict[str, type[ConditionModel]] = {cls.kind: cls for cls in CONDITION_CLASSES}


def _condition_shape(value: Any) -> Any:
    if isinstance(value, ConditionModel):
        return value
    key = single_key(value, "condition", "{has_tag: vip}")
    if key not in CONDITION_KINDS:
        hint = did_you_mean(key, CONDITION_KINDS)
        raise user_error("unknown_condition", f"unknown condition '{key}'{hint}", at_key=key)
    return value


def _pick_condition(value: dict[str, Any]) -> type[ConditionModel] | None:
    return CONDITION_KINDS.get(next(iter(value), ""))


if TYPE_CHECKING:
    Condition = ConditionNode
else:
    Condition = tagged_union(CONDITION_CLASSES, _pick_condition, _condition_shape)

for _model in (AllOf, AnyOf, Not):
    _model.model_rebuild()


def walk(condition: ConditionNode) -> list[ConditionNode]:
    """Every node of ``condition``, parents before children (for reference checks and reports)."""
    found: list[ConditionNode] = [condition]
    match condition:
        case AllOf(items=items) | AnyOf(items=items):
            for item in items:
                found.extend(walk(item))
        case Not(item=item):
            found.extend(walk(item))
    return found
