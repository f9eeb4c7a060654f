"""The actions of SPEC §3, each a single-key mapping such as ``{add_tag: customer}``.

Like conditions, every action is a frozen model with ``kind`` (the file key, a ``ClassVar``) and
``arg`` (its typed argument, aliased to the key); ``refers_to`` names the declared thing a plain-name
argument must be. ``effect_elsewhere`` marks the actions that also notify the integration webhook
(SPEC A2).

``Action`` is the union allowed in automations and template links; ``RuleAction`` adds ``Goto`` and
``Complete``, which only make sense inside a rule step's ``then``/``else``. Match on them::

    match action:
        case AddTag(arg=tag): ...
        case SetField(arg=FieldAssignment(key=key, value=value)): ...
        case Goto(arg=step_id): ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, get_args

from pydantic import Field, JsonValue, PositiveInt

from dripflow.core.conditions_model import LevelRef, ScalarValue
from dripflow.core.modeltypes import FileModel, Name, Url, did_you_mean, single_key, tagged_union, user_error


class FieldAssignment(FileModel):
    """``set_field: {key, value}``."""

    key: Name
    value: ScalarValue


class WebhookCall(FileModel):
    """``webhook: {url, payload?}`` — ``payload`` is sent as JSON (its text values may be templates)."""

    url: Url
    payload: dict[str, JsonValue] | None = None


class ActionModel(FileModel):
    """Base of every action."""

    kind: ClassVar[str]
    refers_to: ClassVar[str | None] = None
    effect_elsewhere: ClassVar[bool] = False

    def plain_name(self) -> str | None:
        """``arg`` when it is the plain name of a declared thing (see ``refers_to``), else None."""
        value = getattr(self, "arg", None)
        return value if self.refers_to is not None and isinstance(value, str) else None


class SubscribeList(ActionModel):
    kind: ClassVar[str] = "subscribe_list"
    refers_to: ClassVar[str | None] = "list"
    arg: Name = Field(alias="subscribe_list")


class UnsubscribeList(ActionModel):
    kind: ClassVar[str] = "unsubscribe_list"
    refers_to: ClassVar[str | None] = "list"
    arg: Name = Field(alias="unsubscribe_list")


class AddTag(ActionModel):
    kind: ClassVar[str] = "add_tag"
    refers_to: ClassVar[str | None] = "tag"
    arg: Name = Field(alias="add_tag")


class RemoveTag(ActionModel):
    kind: ClassVar[str] = "remove_tag"
    refers_to: ClassVar[str | None] = "tag"
    arg: Name = Field(alias="remove_tag")


class SetField(ActionModel):
    kind: ClassVar[str] = "set_field"
    arg: FieldAssignment = Field(alias="set_field")


class ClearField(ActionModel):
    kind: ClassVar[str] = "clear_field"
    refers_to: ClassVar[str | None] = "field"
    arg: Name = Field(alias="clear_field")


class SubscribeSequence(ActionModel):
    kind: ClassVar[str] = "subscribe_sequence"
    refers_to: ClassVar[str | None] = "sequence"
    arg: Name = Field(alias="subscribe_sequence")


class UnsubscribeSequence(ActionModel):
    kind: ClassVar[str] = "unsubscribe_sequence"
    refers_to: ClassVar[str | None] = "sequence"
    arg: Name = Field(alias="unsubscribe_sequence")


class GivePoints(ActionModel):
    kind: ClassVar[str] = "give_points"
    arg: PositiveInt = Field(alias="give_points")


class SubtractPoints(ActionModel):
    kind: ClassVar[str] = "subtract_points"
    arg: PositiveInt = Field(alias="subtract_points")


class GrantMembership(ActionModel):
    kind: ClassVar[str] = "grant_membership"
    effect_elsewhere: ClassVar[bool] = True
    arg: LevelRef = Field(alias="grant_membership")


class RevokeMembership(ActionModel):
    kind: ClassVar[str] = "revoke_membership"
    refers_to: ClassVar[str | None] = "membership"
    effect_elsewhere: ClassVar[bool] = True
    arg: Name = Field(alias="revoke_membership")


class RegisterWebinar(ActionModel):
    kind: ClassVar[str] = "register_webinar"
    refers_to: ClassVar[str | None] = "webinar"
    effect_elsewhere: ClassVar[bool] = True
    arg: Name = Field(alias="register_webinar")


class UnregisterWebinar(ActionModel):
    kind: ClassVar[str] = "unregister_webinar"
    refers_to: ClassVar[str | None] = "webinar"
    effect_elsewhere: ClassVar[bool] = True
    arg: Name = Field(alias="unregister_webinar")


class SubscribeCalendar(ActionModel):
    kind: ClassVar[str] = "subscribe_calendar"
    refers_to: ClassVar[str | None] = "calendar"
    effect_elsewhere: ClassVar[bool] = True
    arg: Name = Field(alias="subscribe_calendar")


class CancelCalendar(ActionModel):
    kind: ClassVar[str] = "cancel_calendar"
    refers_to: ClassVar[str | None] = "calendar"
    effect_elsewhere: ClassVar[bool] = True
    arg: Name = Field(alias="cancel_calendar")


class RefundOrder(ActionModel):
    """``refund_order: PRODUCT`` — refunds the contact's order of that product."""

    kind: ClassVar[str] = "refund_order"
    refers_to: ClassVar[str | None] = "product"
    effect_elsewhere: ClassVar[bool] = True
    arg: Name = Field(alias="refund_order")


class CancelSubscription(ActionModel):
    kind: ClassVar[str] = "cancel_subscription"
    refers_to: ClassVar[str | None] = "product"
    effect_elsewhere: ClassVar[bool] = True
    arg: Name = Field(alias="cancel_subscription")


class Webhook(ActionModel):
    kind: ClassVar[str] = "webhook"
    effect_elsewhere: ClassVar[bool] = True
    arg: WebhookCall = Field(alias="webhook")


class Goto(ActionModel):
    """``goto: STEP`` — rule steps only; at most ``max_loops`` times per enrollment (SPEC S8)."""

    kind: ClassVar[str] = "goto"
    refers_to: ClassVar[str | None] = "step"
    arg: Name = Field(alias="goto")


class Complete(ActionModel):
    """``complete: REASON`` — rule steps only; closes the enrollment as ``completed`` (SPEC S13)."""

    kind: ClassVar[str] = "complete"
    arg: Name = Field(alias="complete")


ActionNode = (
    SubscribeList | UnsubscribeList | AddTag | RemoveTag | SetField | ClearField | SubscribeSequence
    | UnsubscribeSequence | GivePoints | SubtractPoints | GrantMembership | RevokeMembership | RegisterWebinar
    | UnregisterWebinar | SubscribeCalendar | CancelCalendar | RefundOrder | CancelSubscription | Webhook
)  # fmt: skip
RuleActionNode = ActionNode | Goto | Complete

ACTION_CLASSES: tuple[type[ActionModel], ...] = get_args(ActionNode)
RULE_ACTION_CLASSES: tuple[type[ActionModel], ...] = get_args(RuleActionNode)
ACTION_KINDS: dict[str, type[ActionModel]] = {cls.kind: cls for cls in RULE_ACTION_CLASSES}
RULE_ONLY = frozenset({"goto", "complete"})


def _action_shape(in_rule: bool) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, ActionModel):
            return value
        key = single_key(value, "action", "{add_tag: customer}")
        if key in RULE_ONLY and not in_rule:
            raise user_error(
                "rule_only", f"'{key}' can only be used in a rule step's then or else", at_key=key
            )
        if key not in ACTION_KINDS:
            allowed = ACTION_KINDS if in_rule else ACTION_KINDS.keys() - RULE_ONLY
            raise user_error(
                "unknown_action", f"unknown action '{key}'{did_you_mean(key, allowed)}", at_key=key
            )
        return value

    return check


def _pick_action(value: dict[str, Any]) -> type[ActionModel] | None:
    return ACTION_KINDS.get(next(iter(value), ""))


if TYPE_CHECKING:
    Action = ActionNode
    RuleAction = RuleActionNode
else:
    Action = tagged_union(ACTION_CLASSES, _pick_action, _action_shape(in_rule=False))
    RuleAction = tagged_union(RULE_ACTION_CLASSES, _pick_action, _action_shape(in_rule=True))
