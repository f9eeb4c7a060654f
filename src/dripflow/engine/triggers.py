"""What an event sets off: starting rules, automations, stop rules and re-checks (SPEC §3, S4, S12).

Events the engine causes itself (an action's effect, A1) are queued on the context with
:func:`emit` and handled by :func:`drain` in the order they were caused. A3: an automation runs at
most once per originating event and contact, and a cascade deeper than :data:`MAX_DEPTH` is cut
and logged. A4: triggers are forward-only because only events arriving after an automation exists
ever reach it.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from dripflow.core.conditions import evaluate, explain_false
from dripflow.core.contact_view import ContactView
from dripflow.core.states import matching_exclusion
from dripflow.core.triggers_model import (
    ContactUpdated,
    FormSubmitted,
    ScoreReached,
    SurveyCompleted,
    TriggerNode,
)
from dripflow.engine.context import Ctx, Emitted

__all__ = ["MAX_DEPTH", "drain", "emit", "trigger_matches"]

MAX_DEPTH = 10

# Tells apart the events that start a cascade (A3): two steps reached in one batch, or two events
# handled in one transaction, are two originating events, however alike their origin names are.
# An origin can be stored with an enrollment and read by another worker process (see
# enrollments.step_cascade), so it also names the process that made it. Origins are never logged.
_CASCADES = itertools.count(1)
_PROCESS = uuid.uuid4().hex[:12]


def emit(
    ctx: Ctx,
    type: str,
    contact_id: int,
    fields: dict[str, Any],
    *,
    origin: str,
    depth: int = 0,
    view: ContactView | None = None,
) -> None:
    """Queue an event for the triggers. ``origin``: the originating event of the cascade it belongs
    to (A3); an event at depth 0 starts a cascade of its own. ``view``: the contact exactly as the
    event left it, if the emitter knows; it is used only when nothing else has been handled in
    between."""
    if depth == 0:
        origin = f"{origin}#{_PROCESS}.{next(_CASCADES)}"
    ctx.pending.append(Emitted(type, contact_id, fields, origin, depth, view))


def trigger_matches(
    trigger: TriggerNode, event_type: str, fields: dict[str, Any], filters: dict[str, object] | None = None
) -> bool:
    """A trigger matches an event of its type whose fields equal every filter it gives (SPEC §3).

    ``filters``: the trigger's own, when the caller has them already (:class:`Rules` keeps them).
    """
    if trigger.event != event_type:
        return False
    if isinstance(trigger, ScoreReached):
        # first crossing only: the score went from below the threshold to at or above it
        if trigger.score is None:
            return True
        previous = fields.get("previous")
        return fields.get("score", 0) >= trigger.score and (previous is None or previous < trigger.score)
    for name, wanted in (trigger.filters() if filters is None else filters).items():
        if (isinstance(trigger, FormSubmitted) and name == "fields") or (
            isinstance(trigger, SurveyCompleted) and name == "answers"
        ):  # the submitted values (answers) it names must match; the others do not matter
            submitted = fields.get(name) or {}
            if not isinstance(wanted, dict) or not isinstance(submitted, dict):
                return False
            if any(submitted.get(k) != v for k, v in wanted.items()):
                return False
            continue
        if isinstance(trigger, ContactUpdated) and isinstance(fields.get(name), list):
            if wanted not in fields[name]:  # one update may change several attributes and fields
                return False
            continue
        if fields.get(name) != wanted:
            return False
    return True


def drain(ctx: Ctx) -> None:
    """Handle every queued event, including those its handling causes, until none is left."""
    from dripflow.engine.enrollments import refresh_view

    handled = False
    while ctx.pending:
        event = ctx.pending.popleft()
        if _unheard(ctx, event):
            continue
        if not handled:
            ctx.write_deferred()  # what the events cause may read (or delete) anything the batch wrote
        hint = event.view if not handled else None  # an earlier handler may have changed it
        handled = True
        contact = hint or refresh_view(ctx, event.contact_id)
        if contact is None:
            continue
        _handle(ctx, event, contact)


# The engine's own events that change no list, tag, field or fact: when no trigger names them they
# can matter only to rules reading sequence progress (and a new contact has no enrollment yet).
_PROGRESS_EVENTS = frozenset({"step.reached", "sequence.finished", "sequence.subscribed"})


def _unheard(ctx: Ctx, event: Emitted) -> bool:
    """An event nothing can react to is passed over without loading the contact (hot path)."""
    if event.type in ctx.rules.listened:
        return False
    if event.type == "contact.created":
        return True
    return event.type in _PROGRESS_EVENTS and not ctx.rules.watches_sequences


def _handle(ctx: Ctx, event: Emitted, contact: ContactView) -> None:
    from dripflow.engine.actions import apply_action
    from dripflow.engine.enrollments import enroll, mark_due_now, refresh_view

    if event.depth > MAX_DEPTH:
        ctx.log("automation.cut", contact, event=event.type, depth=event.depth, reason="cascade depth")
        return
    # The view is reloaded only when something is about to read it after a change (hot path).
    stale = False

    def fresh() -> ContactView:
        nonlocal contact, stale
        if stale:
            contact = refresh_view(ctx, contact.id) or contact
            stale = False
        return contact

    # Only the start rules and automations naming this event type are tested (in file order).
    for sequence_id, triggers in ctx.rules.starters_by_event.get(event.type, ()):
        if not ctx.rules.existed(ctx.rules.starts_since, sequence_id, ctx.now):
            continue  # A4: its start rules came after this (backdated) event
        if any(trigger_matches(trigger, event.type, event.fields, filters) for trigger, filters in triggers):
            cascade = (event.origin, event.depth + 1)
            if enroll(ctx, fresh(), sequence_id, by=f"start_when:{event.type}", cascade=cascade) is not None:
                fields = {"sequence": sequence_id}
                emit(
                    ctx, "sequence.subscribed", contact.id, fields, origin=event.origin, depth=event.depth + 1
                )  # SPEC §3: entering a sequence is an event
            stale = True
    for automation, filters in ctx.rules.automations_for(event.type, event.fields):
        if not trigger_matches(automation.when, event.type, event.fields, filters):
            continue
        contact = fresh()
        if not ctx.rules.existed(ctx.rules.automations_since, automation.id, ctx.now):
            # A4: added after this (backdated) event happened
            ctx.log(
                "automation.skipped",
                contact,
                automation=automation.id,
                event=event.type,
                reason="created_later",
            )
            continue
        once = (automation.id, event.origin, contact.id)
        if once in ctx.fired:
            ctx.log("automation.skipped", contact, automation=automation.id, event=event.type, reason="once")
            continue
        if automation.if_ is not None and not evaluate(automation.if_, contact, ctx.now):
            why = explain_false(automation.if_, contact, ctx.now)
            ctx.log("automation.skipped", contact, automation=automation.id, event=event.type, reason=why)
            continue
        ctx.fired.add(once)
        ctx.log("automation.fired", contact, automation=automation.id, event=event.type)
        for action in automation.then:
            by = f"automation:{automation.id}"
            apply_action(ctx, fresh(), action, by=by, depth=event.depth, origin=event.origin)
            stale = True
    if ctx.rules.watches_contacts:
        _stop_rules(ctx, event, fresh())
        _exclusions(ctx, fresh())
    elif event.type in ("email.replied", "link.clicked"):  # S12 `replied` / `clicked` read no view
        _stop_rules(ctx, event, contact)
    # A stale view still shows every earlier enrollment: one just made is neither waiting nor blocked.
    if any(item.status in ("active", "blocked") for item in contact.enrollments):
        mark_due_now(ctx, contact.id)  # only a waiting or blocked enrollment can be re-checked


def _stop_rules(ctx: Ctx, event: Emitted, contact: ContactView) -> None:
    """S12: replies, clicks and conditions listed in a sequence's ``stop_on`` complete it."""
    from dripflow.engine.enrollments import close, open_enrollments

    for row in open_enrollments(ctx, contact.id):
        sequence = ctx.rules.sequence(row.sequence_id)
        if sequence is None:
            continue
        for rule in sequence.stop_on:
            if rule == "replied" and event.type == "email.replied":
                if event.fields.get("sequence") == row.sequence_id:
                    close(ctx, row, contact, "completed", "replied")
                    break
            elif rule == "clicked" and event.type == "link.clicked":
                if event.fields.get("sequence") == row.sequence_id:
                    close(ctx, row, contact, "completed", "clicked")
                    break
            elif not isinstance(rule, str) and evaluate(rule, contact, ctx.now):
                close(ctx, row, contact, "completed", "goal")
                break


def _exclusions(ctx: Ctx, contact: ContactView) -> None:
    """S4: a contact who changes to match an exclusion leaves every open enrollment (canceled)."""
    from dripflow.engine.enrollments import close, open_enrollments

    name = matching_exclusion(ctx.workspace, contact, ctx.now)
    if name is None:
        return
    for row in open_enrollments(ctx, contact.id):
        close(ctx, row, contact, "canceled", "excluded")
