"""Carrying out actions (SPEC §3) on one contact: automations, rule steps and template links.

A1: an action that changes the contact emits the matching event (which may fire more
automations); one that changes nothing emits nothing. A2: actions whose effect lives in another
system record a fact on the contact and queue a signed webhook to the workspace's integration URL.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, insert, select

from dripflow.core.actions_model import ActionNode as Action
from dripflow.core.actions_model import (
    AddTag,
    CancelCalendar,
    CancelSubscription,
    ClearField,
    GivePoints,
    GrantMembership,
    RefundOrder,
    RegisterWebinar,
    RemoveTag,
    RevokeMembership,
    SetField,
    SubscribeCalendar,
    SubscribeList,
    SubscribeSequence,
    SubtractPoints,
    UnregisterWebinar,
    UnsubscribeList,
    UnsubscribeSequence,
    Webhook,
)
from dripflow.core.contact_view import ContactView
from dripflow.engine.context import Ctx
from dripflow.engine.enrollments import close, enroll, open_enrollments
from dripflow.engine.triggers import emit
from dripflow.engine.webhooks import action_webhook_key, queue_webhook
from dripflow.store.contacts import ContactRepo
from dripflow.store.tables import Contact, Fact

__all__ = ["apply_action", "record_fact"]


def record_fact(ctx: Ctx, contact_id: int, kind: str, key: str | None, detail: dict[str, Any]) -> None:
    # A statement built once, run as plain Core on the session's connection (hot path: facts are
    # written by many actions); the contact row exists, and later reads in the transaction see it.
    params = {"workspace_id": ctx.workspace_id, "contact_id": contact_id, "kind": kind, "key": key}
    ctx.session.connection().execute(_FACT_INSERT, {**params, "detail": detail, "at": ctx.now})


_FACT_INSERT = insert(cast(Table, Fact.__table__))


def apply_action(
    ctx: Ctx, contact: ContactView, action: Action, *, by: str, depth: int, origin: str | None = None
) -> bool:
    """Carry out one action; True when it changed something (and so emitted its event, A1).

    ``origin``: the originating event of the cascade the action runs in; the events it emits belong
    to the same cascade, so no automation runs twice for it (A3). By default, ``by``."""
    mark = ctx.journal_mark()
    changed, value = _apply(ctx, contact, action, by=by, depth=depth, origin=origin or by)
    if changed:  # X3: the cause is written before the effects it had (enrollments, statuses)
        ctx.log("action.applied", contact, action=action.kind, value=value, by=by, at_mark=mark)
    return changed


def _apply(
    ctx: Ctx, contact: ContactView, action: Action, *, by: str, depth: int, origin: str
) -> tuple[bool, Any]:
    repo = ContactRepo(ctx.session, ctx.workspace_id, clock=ctx.clock)
    row = ctx.session.get(Contact, contact.id)
    assert row is not None

    def fire(event: str, fields: dict[str, Any]) -> None:
        emit(ctx, event, contact.id, fields, origin=origin, depth=depth + 1)

    match action:
        case SubscribeList(arg=name):
            if repo.subscribe(row, name, ctx.now):
                fire("list.subscribed", {"list": name})
                return True, name
        case UnsubscribeList(arg=name):
            if repo.unsubscribe(row, name, ctx.now):
                fire("list.unsubscribed", {"list": name})
                return True, name
        case AddTag(arg=tag):
            if repo.add_tag(row, tag, ctx.now):
                fire("tag.assigned", {"tag": tag})
                return True, tag
        case RemoveTag(arg=tag):
            if repo.remove_tag(row, tag):
                fire("tag.removed", {"tag": tag})
                return True, tag
        case SetField(arg=assignment):
            if (row.fields or {}).get(assignment.key) != assignment.value:
                row.fields = {**(row.fields or {}), assignment.key: assignment.value}
                row.updated_at = ctx.now
                fire("contact.updated", {"changed": assignment.key})
                return True, {assignment.key: assignment.value}
        case ClearField(arg=key):
            if key in (row.fields or {}):
                row.fields = {k: v for k, v in row.fields.items() if k != key}
                row.updated_at = ctx.now
                fire("contact.updated", {"changed": key})
                return True, key
        case SubscribeSequence(arg=sequence_id):
            if enroll(ctx, contact, sequence_id, by=by, cascade=(origin, depth + 1)) is None:
                return False, sequence_id
            fire("sequence.subscribed", {"sequence": sequence_id})
            return True, sequence_id
        case UnsubscribeSequence(arg=sequence_id):
            rows = open_enrollments(ctx, contact.id, sequence_id)
            for enrollment in rows:
                # S13 and the §6 table: the action closes it as completed, reason unsubscribed (the
                # contact's own unsubscribe from a sequence is canceled/unsubscribed, S12).
                close(ctx, enrollment, contact, "completed", "unsubscribed")
                fire("sequence.unsubscribed", {"sequence": sequence_id})
            return bool(rows), sequence_id
        case GivePoints(arg=points) | SubtractPoints(arg=points):
            delta = points if isinstance(action, GivePoints) else -points
            before = row.score
            row.score = before + delta
            row.updated_at = ctx.now
            fire("contact.updated", {"changed": "score"})
            peak = _score_peak(contact, before) if delta > 0 else before
            if row.score > peak:  # §3 score.reached, first crossing only: above the highest score yet
                record_fact(ctx, contact.id, "score.reached", None, {"score": row.score})
                fire("score.reached", {"score": row.score, "previous": peak})
            return True, delta
        case (
            GrantMembership()
            | RevokeMembership()
            | RegisterWebinar()
            | UnregisterWebinar()
            | SubscribeCalendar()
            | CancelCalendar()
            | RefundOrder()
            | CancelSubscription()
            | Webhook()
        ):
            return _elsewhere(ctx, contact, action, fire)
    return False, None


def _score_peak(contact: ContactView, score: int) -> int:
    """The highest score the contact has had: ``score`` (its current one) or a peak recorded before
    (its `score.reached` facts, in the view the action was given: no query)."""
    peaks = (fact.detail.get("score", score) for fact in contact.facts if fact.kind == "score.reached")
    return max([score, *(int(peak) for peak in peaks)])


_ELSEWHERE_EVENTS: dict[type, str] = {
    GrantMembership: "membership.granted",
    RevokeMembership: "membership.revoked",
    RegisterWebinar: "webinar.registered",
    UnregisterWebinar: "webinar.unregistered",
    SubscribeCalendar: "calendar.registered",
    CancelCalendar: "calendar.canceled",
    RefundOrder: "product.refunded",
    CancelSubscription: "subscription.canceled",
}


def _elsewhere(ctx: Ctx, contact: ContactView, action: Action, fire: Any) -> tuple[bool, Any]:
    """A2: record the change as a fact and queue the integration webhook (delivered by the outbox)."""
    dumped = action.model_dump(mode="json")[action.kind]
    integration = ctx.workspace.delivery.integrations
    url = getattr(integration, "webhook", None) if integration is not None else None
    if isinstance(action, Webhook):
        delivery = action_webhook_key(ctx, contact.id, action.kind)
        queue_webhook(ctx, contact, action.kind, action.arg.payload, delivery, url=action.arg.url)
        return True, dumped
    event = _ELSEWHERE_EVENTS[type(action)]
    key, detail = _fact_key(dumped)
    if not _changes(ctx, contact.id, action, key):
        return False, dumped
    record_fact(ctx, contact.id, event, key, detail)
    fire(event, {_MAIN_FIELD.get(event, "key"): key, **detail})
    if url is not None:
        payload = {"action": action.kind, "value": dumped}
        queue_webhook(ctx, contact, event, payload, action_webhook_key(ctx, contact.id, event), url=url)
    return True, dumped


# The facts that make up the state an action elsewhere changes (for one membership, webinar,
# calendar or product), the state it sets first.
_STATE_FACTS: dict[type, tuple[str, ...]] = {
    GrantMembership: ("membership.granted", "membership.revoked"),
    RevokeMembership: ("membership.granted", "membership.revoked"),
    RegisterWebinar: ("webinar.registered", "webinar.unregistered"),
    UnregisterWebinar: ("webinar.registered", "webinar.unregistered"),
    SubscribeCalendar: ("calendar.registered", "calendar.canceled", "calendar.completed"),
    CancelCalendar: ("calendar.registered", "calendar.canceled", "calendar.completed"),
    RefundOrder: ("product.purchased", "product.refunded"),
    CancelSubscription: ("product.purchased", "subscription.canceled"),
}


def _changes(ctx: Ctx, contact_id: int, action: Action, key: str | None) -> bool:
    """A1: whether the action changes the contact's state. Granting a level it has, revoking a
    membership it does not have, registering it twice, cancelling a booking that is not active,
    refunding an order it has not placed (or that is refunded) changes nothing."""
    kinds = _STATE_FACTS[type(action)]
    history = ctx.session.execute(
        select(Fact.kind, Fact.detail)
        .where(
            Fact.workspace_id == ctx.workspace_id,
            Fact.contact_id == contact_id,
            Fact.key == key,
            Fact.kind.in_(kinds),
        )
        .order_by(Fact.at, Fact.id)
    ).all()
    if isinstance(action, GrantMembership | RevokeMembership):
        on: dict[str | None, bool] = {}  # each level's state, as the has_membership condition reads it
        for kind, detail in history:
            level = None if detail.get("level") is None else str(detail["level"])
            if kind == "membership.granted":
                on[level] = True
            elif level is None:
                on = dict.fromkeys(on, False)
            else:
                on[level] = False
        if isinstance(action, GrantMembership):
            return not on.get(action.arg.level, False)
        return any(on.values())
    latest = history[-1].kind if history else None
    if isinstance(action, RegisterWebinar | SubscribeCalendar):
        return latest != kinds[0]
    return latest == kinds[0]  # unregister, cancel a booking, refund, cancel a subscription


_MAIN_FIELD = {
    "membership.granted": "membership",
    "membership.revoked": "membership",
    "webinar.registered": "webinar",
    "webinar.unregistered": "webinar",
    "calendar.registered": "calendar",
    "calendar.canceled": "calendar",
    "product.refunded": "product",
    "subscription.canceled": "product",
}


def _fact_key(dumped: Any) -> tuple[str | None, dict[str, Any]]:
    if isinstance(dumped, str):
        return dumped, {}
    if isinstance(dumped, dict):
        key = dumped.get("membership") or dumped.get("product") or dumped.get("webinar")
        return (str(key) if key is not None else None), {k: v for k, v in dumped.items() if k != "membership"}
    return None, {}
