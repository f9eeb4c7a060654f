"""Sequence steps (SPEC §2 "Step fields", §5), a union discriminated on ``type``.

Every step has ``id``, ``type``, ``active``, ``after`` (a :class:`Delay`), ``at``, ``days`` and, in
``date`` sequences, ``on`` (a :class:`DateAnchor`) and ``annually``. The step classes add their own
fields: :class:`EmailStep`, :class:`SmsStep`, :class:`TaskStep`, :class:`RuleStep`,
:class:`WaitUntilStep`, :class:`FulfillmentStep`, :class:`PostcardStep`. ``Step`` is the union.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import Field, PositiveInt, model_validator

from dripflow.core.actions_model import RuleAction
from dripflow.core.conditions_model import Condition
from dripflow.core.modeltypes import (
    ClockTime,
    Delay,
    FileModel,
    IsoDate,
    Name,
    NonEmpty,
    SignedDelay,
    Weekday,
    describe,
    did_you_mean,
    tagged_union,
    user_error,
)


class DateAnchor(FileModel):
    """``on: {date: "2026-12-01"}`` or ``on: {field: birthday, offset: {days: -1}}`` (SPEC T7)."""

    on_date: IsoDate | None = Field(None, alias="date")
    field_key: Name | None = Field(None, alias="field")
    offset: SignedDelay | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.on_date is None) == (self.field_key is None):
            raise user_error(
                "date_anchor", "give either date (a fixed day) or field (a date field of the contact)"
            )
        if self.offset is not None and self.on_date is not None:
            raise user_error("date_anchor", "offset goes with field, not with a fixed date", at_key="offset")
        return self


class Variant(FileModel):
    """One arm of a split test; contacts are spread by ``weight`` (SPEC S9)."""

    template: Name
    weight: PositiveInt = 1


class StepModel(FileModel):
    """Fields common to every step type."""

    type_name: ClassVar[str]
    id: Name
    active: bool = True
    after: Delay = Delay()
    at: ClockTime | None = None
    days: Annotated[tuple[Weekday, ...], NonEmpty] | None = None
    on: DateAnchor | None = None
    annually: bool = False


class EmailStep(StepModel):
    """Sends ``template``, or one of ``variants``, from ``mailbox`` (else the sequence's, S10)."""

    type_name: ClassVar[str] = "email"
    type: Literal["email"] = "email"
    template: Name | None = None
    variants: Annotated[tuple[Variant, ...], NonEmpty] | None = None
    mailbox: Name | None = None
    reply_to_previous: bool = False

    @model_validator(mode="after")
    def _one_content(self) -> Self:
        if (self.template is None) == (self.variants is None):
            raise user_error(
                "email_content",
                "an email step needs either template or variants (not both)",
                at_key="template",
            )
        return self

    @property
    def templates(self) -> tuple[str, ...]:
        """Every template this step may send."""
        if self.variants is not None:
            return tuple(variant.template for variant in self.variants)
        return (self.template,) if self.template is not None else ()


class SmsStep(StepModel):
    """``from``: the sender number or name (else the gateway's default)."""

    type_name: ClassVar[str] = "sms"
    type: Literal["sms"] = "sms"
    template: Name
    from_: Name | None = Field(None, alias="from")


class TaskStep(StepModel):
    """A to-do for ``assignee`` (``owner``: the contact's owner), due ``due`` after creation (S8)."""

    type_name: ClassVar[str] = "task"
    type: Literal["task"] = "task"
    title: Name
    assignee: Name = "owner"
    due: Delay = Delay()
    pause_until_complete: bool = False


class RuleStep(StepModel):
    """Runs ``then`` when ``if`` holds (or when there is no ``if``), else ``else`` (S8)."""

    type_name: ClassVar[str] = "rule"
    type: Literal["rule"] = "rule"
    if_: Condition | None = Field(None, alias="if")
    then: tuple[RuleAction, ...] = ()
    else_: tuple[RuleAction, ...] = Field((), alias="else")


class WaitUntilStep(StepModel):
    """Holds the enrollment until ``until`` holds or ``timeout`` passes (S8)."""

    type_name: ClassVar[str] = "wait_until"
    type: Literal["wait_until"] = "wait_until"
    until: Condition
    timeout: Delay | None = None


class FulfillmentStep(StepModel):
    """Adds the contact to the named fulfillment list (exported as CSV, S8)."""

    type_name: ClassVar[str] = "fulfillment"
    type: Literal["fulfillment"] = "fulfillment"
    list_name: Name = Field(alias="list")


class PostcardStep(StepModel):
    type_name: ClassVar[str] = "postcard"
    type: Literal["postcard"] = "postcard"
    template: Name


StepNode = EmailStep | SmsStep | TaskStep | RuleStep | WaitUntilStep | FulfillmentStep | PostcardStep
STEP_CLASSES: tuple[type[StepModel], ...] = get_args(StepNode)
STEP_TYPES: dict[str, type[StepModel]] = {cls.type_name: cls for cls in STEP_CLASSES}


def _step_shape(value: Any) -> Any:
    if isinstance(value, StepModel):
        return value
    if not isinstance(value, dict):
        raise user_error(
            "step_shape",
            "a step must be a mapping such as {id: hello, type: email, template: welcome} "
            f"(got {describe(value)})",
        )
    kind = value.get("type")
    if kind is None:
        raise user_error("step_type", f"a step needs a type: {', '.join(STEP_TYPES)}", at_key="type")
    if not isinstance(kind, str) or kind not in STEP_TYPES:
        message = f"unknown step type {describe(kind)}{did_you_mean(str(kind), STEP_TYPES)}"
        raise user_error("step_type", message, at_key="type")
    return value


def _pick_step(value: dict[str, Any]) -> type[StepModel] | None:
    kind = value.get("type")
    return STEP_TYPES.get(kind) if isinstance(kind, str) else None


if TYPE_CHECKING:
    Step = StepNode
else:
    Step = tagged_union(STEP_CLASSES, _pick_step, _step_shape)
