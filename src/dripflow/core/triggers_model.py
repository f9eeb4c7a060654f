"""Trigger events of SPEC §3: ``when: {event: TYPE, ...filters}`` and sequences' ``start_when``.

One class per family of events sharing the same filters (``ListEvent`` covers ``list.subscribed``
and ``list.unsubscribed``); ``event`` holds the exact type. Filters are optional: a missing one
matches anything, a given one must equal the event's field of that name (SPEC §3).
``trigger.filters()`` returns the given filters by their file names, ready for that comparison.
``refs`` maps a filter to the declared thing it names, for reference checks.

``Trigger`` is the union to use in other models; ``EVENT_TYPES`` lists every event type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, get_args

from pydantic import Field, model_validator

from dripflow.core.conditions_model import ScalarValue
from dripflow.core.modeltypes import FileModel, Name, describe, did_you_mean, tagged_union, user_error


class TriggerModel(FileModel):
    """Base of every trigger: ``event`` plus that event's optional filters."""

    refs: ClassVar[dict[str, str]] = {}

    def filters(self) -> dict[str, object]:
        """The filters given, by file key (``{"list": "customers"}``), ``event`` excluded."""
        dumped = self.model_dump(mode="json", exclude_none=True)
        dumped.pop("event", None)
        return dumped


class ContactCreated(TriggerModel):
    event: Literal["contact.created"]


class ContactUpdated(TriggerModel):
    """``changed``: the custom field key or contact attribute that changed."""

    event: Literal["contact.updated"]
    changed: Name | None = None


class ListEvent(TriggerModel):
    refs: ClassVar[dict[str, str]] = {"list": "list"}
    event: Literal["list.subscribed", "list.unsubscribed"]
    list_name: Name | None = Field(None, alias="list")


class TagEvent(TriggerModel):
    refs: ClassVar[dict[str, str]] = {"tag": "tag"}
    event: Literal["tag.assigned", "tag.removed"]
    tag: Name | None = None


class FormSubmitted(TriggerModel):
    """``fields``: submitted values that must match, by form field name."""

    refs: ClassVar[dict[str, str]] = {"form": "form"}
    event: Literal["form.submitted"]
    form: Name | None = None
    form_fields: dict[str, ScalarValue] | None = Field(None, alias="fields")


class PageVisited(TriggerModel):
    refs: ClassVar[dict[str, str]] = {"page": "page"}
    event: Literal["page.visited"]
    page: Name | None = None


class SequenceEvent(TriggerModel):
    refs: ClassVar[dict[str, str]] = {"sequence": "sequence"}
    event: Literal["sequence.subscribed", "sequence.finished", "sequence.unsubscribed"]
    sequence: Name | None = None


class StepReached(TriggerModel):
    refs: ClassVar[dict[str, str]] = {"sequence": "sequence"}
    event: Literal["step.reached"]
    sequence: Name | None = None
    step: Name | None = None

    @model_validator(mode="after")
    def _step_needs_sequence(self) -> Self:
        if self.step is not None and self.sequence is None:
            raise user_error(
                "step_ref", "a step is named within its sequence: give sequence too", at_key="sequence"
            )
        return self


class LinkClicked(TriggerModel):
    """``message``: the message (id) the link was clicked in."""

    refs: ClassVar[dict[str, str]] = {"link": "link"}
    event: Literal["link.clicked"]
    link: Name | None = None
    message: Name | None = None


class SplitLinkClicked(TriggerModel):
    refs: ClassVar[dict[str, str]] = {"link": "link"}
    event: Literal["split_link.clicked"]
    link: Name | None = None
    variant: Name | None = None


class ProductEvent(TriggerModel):
    refs: ClassVar[dict[str, str]] = {"product": "product"}
    event: Literal["product.purchased", "product.refunded", "product.partially_refunded"]
    product: Name | None = None
    amount: float | None = None


class SubscriptionEvent(TriggerModel):
    refs: ClassVar[dict[str, str]] = {"product": "product"}
    event: Literal[
        "subscription.canceled", "subscription.cancellation_requested", "subscription.cancellation_withdrawn"
    ]
    product: Name | None = None


class VideoEvent(TriggerModel):
    refs: ClassVar[dict[str, str]] = {"video": "video"}
    event: Literal["video.played", "video.completed"]
    video: Name | None = None


class ScoreReached(TriggerModel):
    """Fires the first time the contact's score reaches ``score``."""

    event: Literal["score.reached"]
    score: float | None = None


class MembershipEvent(TriggerModel):
    refs: ClassVar[dict[str, str]] = {"membership": "membership"}
    event: Literal["membership.granted", "membership.revoked", "membership.level_completed"]
    membership: Name | None = None
    level: Name | None = None

    @model_validator(mode="after")
    def _level_needs_membership(self) -> Self:
        if self.level is not None and self.membership is None:
            raise user_error(
                "level_ref",
                "a level is named within its membership: give membership too",
                at_key="membership",
            )
        return self


class WebinarEvent(TriggerModel):
    refs: ClassVar[dict[str, str]] = {"webinar": "webinar"}
    event: Literal[
        "webinar.registered",
        "webinar.attended",
        "webinar.missed",
        "webinar.watched_fully",
        "webinar.left_early",
    ]
    webinar: Name | None = None


class CalendarEvent(TriggerModel):
    refs: ClassVar[dict[str, str]] = {"calendar": "calendar"}
    event: Literal["calendar.registered", "calendar.completed", "calendar.canceled"]
    calendar: Name | None = None


class SurveyCompleted(TriggerModel):
    """``answers``: answers that must match, by question; ``score``: the survey score to match."""

    refs: ClassVar[dict[str, str]] = {"survey": "survey"}
    event: Literal["survey.completed"]
    survey: Name | None = None
    answers: dict[str, ScalarValue] | None = None
    score: float | None = None


class PartnerJoined(TriggerModel):
    refs: ClassVar[dict[str, str]] = {"product": "product"}
    event: Literal["affiliate.joined", "jv_broker.joined"]
    product: Name | None = None


class EmailEvent(TriggerModel):
    event: Literal["email.delivered", "email.opened", "email.replied", "email.complained"]
    message: Name | None = None


class EmailBounced(TriggerModel):
    event: Literal["email.bounced"]
    message: Name | None = None
    kind: Literal["hard", "soft"] | None = None


class TaskCompleted(TriggerModel):
    event: Literal["task.completed"]
    task: Name | None = None


class Unsubscribed(TriggerModel):
    event: Literal["unsubscribed"]
    scope: Literal["all", "list", "sequence"] | None = None


TriggerNode = (
    ContactCreated | ContactUpdated | ListEvent | TagEvent | FormSubmitted | PageVisited | SequenceEvent
    | StepReached | LinkClicked | SplitLinkClicked | ProductEvent | SubscriptionEvent | VideoEvent
    | ScoreReached | MembershipEvent | WebinarEvent | CalendarEvent | SurveyCompleted | PartnerJoined
    | EmailEvent | EmailBounced | TaskCompleted | Unsubscribed
)  # fmt: skip

TRIGGER_CLASSES: tuple[type[TriggerModel], ...] = get_args(TriggerNode)
EVENT_CLASSES: dict[str, type[TriggerModel]] = {
    event: cls for cls in TRIGGER_CLASSES for event in get_args(cls.model_fields["event"].annotation)
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_CLASSES)


def _trigger_shape(value: Any) -> Any:
    if isinstance(value, TriggerModel):
        return value
    if not isinstance(value, dict):
        raise user_error(
            "trigger_shape",
            "a trigger must be a mapping such as {event: list.subscribed, list: customers} "
            f"(got {describe(value)})",
        )
    if "event" not in value:
        raise user_error(
            "trigger_event", "a trigger needs an event, such as event: list.subscribed", at_key="event"
        )
    event = value["event"]
    if not isinstance(event, str) or event not in EVENT_CLASSES:
        raise user_error(
            "unknown_event",
            f"unknown event {describe(event)}{did_you_mean(str(event), EVENT_TYPES)}",
            at_key="event",
        )
    return value


def _pick_trigger(value: dict[str, Any]) -> type[TriggerModel] | None:
    event = value.get("event")
    return EVENT_CLASSES.get(event) if isinstance(event, str) else None


if TYPE_CHECKING:
    Trigger = TriggerNode
else:
    Trigger = tagged_union(TRIGGER_CLASSES, _pick_trigger, _trigger_shape)
