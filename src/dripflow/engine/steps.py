"""Executing one due step of one enrollment (SPEC S6–S13, T6, T8, D3, D4, D6, D7).

Every step occurrence is recorded once in ``step_runs`` under a key unique per enrollment, and
its message (if any) goes into the outbox under the same key (D3): whatever is retried, a step
occurrence yields at most one message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from email.utils import parseaddr
from functools import lru_cache
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, func, insert, select

from dripflow.core.actions_model import Complete, Goto
from dripflow.core.conditions import evaluate
from dripflow.core.contact_view import ContactView
from dripflow.core.model import EmailTemplate, PostcardTemplate, SmsTemplate
from dripflow.core.model import Sequence as SequenceDef
from dripflow.core.modeltypes import WEEKDAYS
from dripflow.core.render import (
    MissingVariable,
    RenderContext,
    RenderFailure,
    render_email,
    render_postcard,
    render_sms,
)
from dripflow.core.states import choose_mailbox, choose_variant, matching_exclusion, route_mailbox
from dripflow.core.steps_model import (
    EmailStep,
    FulfillmentStep,
    PostcardStep,
    RuleStep,
    SmsStep,
    StepNode,
    TaskStep,
    WaitUntilStep,
)
from dripflow.core.timing import missed_window, step_due
from dripflow.core.windows import Window, frequency_cap_next_slot, hold_reason, local_day_bounds, next_open
from dripflow.engine.context import Ctx
from dripflow.engine.enrollments import (
    FOREVER,
    close,
    note_step_run,
    refresh_view,
    schedule_next,
    set_status,
    step_cascade,
    timing_context,
    timing_of,
)
from dripflow.engine.messages import defer_message, link_url, message_row, open_url, unsubscribe_url
from dripflow.engine.triggers import emit
from dripflow.store.tables import Enrollment, Fulfillment, Message, StepRun, Task

__all__ = ["Caps", "run_enrollment"]

_MAX_STEPS_PER_PASS = 200


@dataclass
class Caps:
    """Mailbox counts for the local day, loaded once per batch and kept up to date locally (D4)."""

    days: dict[str, tuple[datetime, datetime, int]] = field(default_factory=dict)

    def sent_today(self, ctx: Ctx, mailbox: str) -> tuple[int, datetime]:
        zone = _mailbox_zone(ctx, mailbox)
        start, end = local_day_bounds(ctx.now, zone)
        known = self.days.get(mailbox)
        if known is None or known[0] != start:
            ctx.write_deferred()  # the batch's messages so far count
            count = ctx.session.scalar(
                select(func.count())
                .select_from(Message)
                .where(
                    Message.workspace_id == ctx.workspace_id,
                    Message.mailbox == mailbox,
                    Message.created_at >= start,
                    Message.created_at < end,
                )
            )
            known = (start, end, int(count or 0))
            self.days[mailbox] = known
        return known[2], known[1]

    def count(self, mailbox: str) -> None:
        start, end, sent = self.days[mailbox]
        self.days[mailbox] = (start, end, sent + 1)


def _mailbox_zone(ctx: Ctx, mailbox: str) -> ZoneInfo:
    box = ctx.workspace.mailbox(mailbox)
    zone = box.timezone if box is not None and box.timezone else ctx.workspace.workspace.timezone
    return ZoneInfo(zone)


def run_enrollment(ctx: Ctx, row: Enrollment, contact: ContactView, caps: Caps) -> None:
    """Execute the enrollment's steps while they are due (after 0 chains fire together)."""
    for _ in range(_MAX_STEPS_PER_PASS):
        if row.open_key is None or row.due_at is None or row.due_at > ctx.now:
            return
        if row.status not in ("active", "queued", "blocked"):
            return
        sequence = ctx.rules.sequence(row.sequence_id)
        if sequence is None or ctx.rules.statuses.get(row.sequence_id) in ("paused", "draft"):
            return
        step = sequence.step(row.next_step) if row.next_step is not None else None
        if step is None:  # the step was removed from the sequence (S7)
            schedule_next(ctx, row, sequence, contact, base=row.base_at, last_step=_surviving(sequence, row))
            continue
        contact = _execute(ctx, row, sequence, step, contact, caps)


def _reached(ctx: Ctx, row: Enrollment, contact: ContactView, step: StepNode) -> None:
    origin, depth = step_cascade(ctx, row, f"step:{row.id}")
    fields = {"sequence": row.sequence_id, "step": step.id}
    emit(ctx, "step.reached", contact.id, fields, origin=origin, depth=depth)


def _surviving(sequence: SequenceDef, row: Enrollment) -> str | None:
    ids = [step.id for step in sequence.steps]
    return row.last_step if row.last_step in ids else None


def _execute(
    ctx: Ctx, row: Enrollment, sequence: SequenceDef, step: StepNode, contact: ContactView, caps: Caps
) -> ContactView:
    now = ctx.now
    occurrence = _occurrence(row, sequence, step)
    grace = ctx.workspace.workspace.date_step_grace
    late = row.step_due_at is not None and missed_window(row.step_due_at, now, grace)
    if sequence.kind == "date" and row.status != "queued" and late:  # T8 (a held step is not late)
        _record(ctx, row, contact, step, occurrence, "skipped", "missed_window")
        ctx.log("step.skipped", contact, sequence=row.sequence_id, step=step.id, reason="missed_window")
        _advance(ctx, row, sequence, contact, step)
        return contact
    is_message = isinstance(step, EmailStep | SmsStep)
    if contact.lead_status == "blacklisted" or (is_message and contact.unsubscribed):
        close(ctx, row, contact, "canceled", "unsubscribed" if contact.unsubscribed else "manual")
        return contact
    if is_message:
        exclusion = matching_exclusion(ctx.workspace, contact, now)
        if exclusion is not None:  # S4 at send time
            close(ctx, row, contact, "excluded", exclusion)
            return contact
    if sequence.recipients is not None and not evaluate(sequence.recipients, contact, now):
        _record(ctx, row, contact, step, occurrence, "skipped", "recipients")
        ctx.log("step.skipped", contact, sequence=row.sequence_id, step=step.id, reason="recipients")
        _advance(ctx, row, sequence, contact, step)
        return contact
    if is_message and _held(ctx, row, sequence, contact, step, caps):
        return contact

    match step:
        case EmailStep():
            if not _send_email(ctx, row, sequence, step, contact, occurrence, caps):
                return contact
        case SmsStep():
            if not _send_sms(ctx, row, step, contact, occurrence):
                return contact
        case PostcardStep():
            if not _postcard(ctx, row, step, contact):
                return contact
        case TaskStep():
            _task(ctx, row, step, contact)
        case FulfillmentStep():
            ctx.session.add(
                Fulfillment(
                    workspace_id=ctx.workspace_id,
                    kind="fulfillment",
                    list=step.list_name,
                    contact_id=contact.id,
                    enrollment_id=row.id,
                    detail={},
                    at=now,
                )
            )
        case WaitUntilStep():
            if not _wait_over(ctx, row, step, contact):
                return contact
        case RuleStep():
            return _rule(ctx, row, sequence, step, contact, occurrence)
    if row.status in ("queued", "blocked"):
        set_status(ctx, row, contact, "active")
    _record(ctx, row, contact, step, occurrence, "executed", None)
    if not isinstance(step, EmailStep | SmsStep):
        ctx.log("step.executed", contact, sequence=row.sequence_id, step=step.id, type=step.type)
    _reached(ctx, row, contact, step)
    if isinstance(step, TaskStep) and step.pause_until_complete:
        row.last_step = step.id
        row.base_at = now
        row.due_at = None
        return contact
    _advance(ctx, row, sequence, contact, step)
    return contact


def _occurrence(row: Enrollment, sequence: SequenceDef, step: StepNode) -> str:
    if sequence.kind == "date" and row.step_due_at is not None:
        return f"{step.id}@{row.step_due_at.date().isoformat()}" if step.annually else step.id
    return str(row.runs + 1)


def _record(
    ctx: Ctx,
    row: Enrollment,
    contact: ContactView,
    step: StepNode,
    occurrence: str,
    outcome: str,
    reason: str | None,
) -> None:
    row.runs += 1
    note_step_run(ctx, row, step.id, occurrence)
    # Plain Core, written with the batch's others (Ctx.defer, hot path): its enrollment and contact
    # rows already exist, and whatever reads step runs later in the transaction writes them first.
    ctx.defer(
        _STEP_RUN_INSERT,
        {
            "workspace_id": ctx.workspace_id,
            "enrollment_id": row.id,
            "contact_id": contact.id,
            "sequence_id": row.sequence_id,
            "step_id": step.id,
            "occurrence": occurrence,
            "outcome": outcome,
            "reason": reason,
            "at": ctx.now,
        },
    )


_STEP_RUN_INSERT = insert(cast(Table, StepRun.__table__))


def _advance(ctx: Ctx, row: Enrollment, sequence: SequenceDef, contact: ContactView, step: StepNode) -> None:
    if sequence.kind == "date":
        # T7: date steps are independent; occurrences are looked for from the enrollment on, so a
        # date passed while an earlier step was held is still reached, and skipped as missed (T8).
        schedule_next(ctx, row, sequence, contact, base=row.base_at, last_step=step.id)
        return
    schedule_next(ctx, row, sequence, contact, base=ctx.now, last_step=step.id)


# -- holds (T6, D4, D7) -------------------------------------------------------------------------


def _window(ctx: Ctx, sequence: SequenceDef, contact: ContactView) -> Window | None:
    if sequence.schedule is None:
        return None
    schedule = next((item for item in ctx.workspace.schedules if item.id == sequence.schedule), None)
    if schedule is None:
        return None
    zone_name = schedule.timezone
    if zone_name == "workspace":
        zone_name = ctx.workspace.workspace.timezone
    elif zone_name == "contact":
        zone_name = contact.timezone or ctx.workspace.workspace.timezone
    hours = tuple((item.start, time(0, 0) if item.end == time.max else item.end) for item in schedule.hours)
    return Window(
        zone=ZoneInfo(zone_name),
        days=frozenset(WEEKDAYS.index(day) for day in schedule.days),
        hours=hours,
        excluded_dates=frozenset(schedule.excluded_dates),
    )


# Pure functions of hashable values, asked again and again with the same arguments within a batch
# (every contact of a zone held at the same moment; every message of a mailbox).
_next_open = lru_cache(maxsize=4096)(next_open)


@lru_cache(maxsize=256)
def _domain(sender: str) -> str:
    return parseaddr(sender)[1].rsplit("@", 1)[-1]


def _hold(ctx: Ctx, row: Enrollment, contact: ContactView, reason: str, until: datetime) -> bool:
    set_status(ctx, row, contact, "queued", reason)
    row.due_at = until
    return True


def _held(
    ctx: Ctx, row: Enrollment, sequence: SequenceDef, contact: ContactView, step: StepNode, caps: Caps
) -> bool:
    now = ctx.now
    window = _window(ctx, sequence, contact)
    if window is not None:
        reason = hold_reason(window, now)
        if reason is not None:
            return _hold(ctx, row, contact, reason, _next_open(window, now))
    if isinstance(step, EmailStep):
        frequency = ctx.workspace.ruleset.frequency
        if frequency is not None:
            ctx.write_deferred()  # the batch's messages so far count
            sent = list(
                ctx.session.scalars(
                    select(Message.created_at).where(
                        Message.workspace_id == ctx.workspace_id,
                        Message.contact_id == contact.id,
                        Message.channel == "email",
                        Message.created_at > now - frequency.per,
                    )
                )
            )
            slot = frequency_cap_next_slot(sent, frequency.max, frequency.per, now)
            if slot > now:
                return _hold(ctx, row, contact, "frequency_cap", slot)
    return False


# -- messages -----------------------------------------------------------------------------------


def _render_context(
    ctx: Ctx, row: Enrollment, contact: ContactView, key: str, *, opens: bool = False
) -> RenderContext:
    settings = ctx.workspace.workspace
    return RenderContext(
        contact=contact,
        workspace_name=settings.name,
        physical_address=settings.physical_address or "",
        unsubscribe_url=unsubscribe_url(ctx, key, contact.id, row.sequence_id),
        link_url=lambda name: link_url(ctx, key, contact.id, name),
        open_url=open_url(ctx, key, contact.id) if opens else None,  # D2: emails only
    )


def _block(ctx: Ctx, row: Enrollment, contact: ContactView, reason: str) -> bool:
    """S11: the step cannot be built; the enrollment waits until the contact changes."""
    set_status(ctx, row, contact, "blocked", reason)
    row.due_at = None
    return False


def _send_email(
    ctx: Ctx,
    row: Enrollment,
    sequence: SequenceDef,
    step: EmailStep,
    contact: ContactView,
    occurrence: str,
    caps: Caps,
) -> bool:
    route = route_mailbox(step, sequence, contact, ctx.workspace)
    if route is None:
        return _block(ctx, row, contact, "render_error")
    if isinstance(route, tuple):  # D8: a pool; the enrollment keeps the mailbox it was given
        if row.mailbox is None or row.mailbox not in route:
            counts: dict[str, int] = {}
            caps_by: dict[str, int] = {}
            for name in route:
                counts[name] = caps.sent_today(ctx, name)[0]
                box = ctx.workspace.mailbox(name)
                caps_by[name] = box.daily_cap if box is not None and box.daily_cap else 10**9
            chosen = choose_mailbox(route, counts, caps_by)
            if chosen is None:
                until = min(caps.sent_today(ctx, name)[1] for name in route)
                _hold(ctx, row, contact, "daily_cap", until)
                return False
            row.mailbox = chosen
        mailbox_id = row.mailbox
    else:
        mailbox_id = route
    mailbox = ctx.workspace.mailbox(mailbox_id)
    if mailbox is None:
        return _block(ctx, row, contact, "render_error")
    if mailbox.daily_cap is not None:
        sent, day_end = caps.sent_today(ctx, mailbox_id)
        if sent >= mailbox.daily_cap:
            _hold(ctx, row, contact, "daily_cap", day_end)
            return False
    variant = choose_variant(contact.id, step.id, step.variants) if step.variants else None
    template_id = variant.template if variant is not None else step.template
    assert template_id is not None
    template = ctx.workspace.templates.get(template_id)
    if not isinstance(template, EmailTemplate):
        return _block(ctx, row, contact, "render_error")
    key = f"enrollment:{row.id}:{occurrence}"
    try:
        # D2: the open pixel goes into an HTML part; a text-only email signs none (hot path)
        opens = template.html is not None
        rendered = render_email(template, _render_context(ctx, row, contact, key, opens=opens))
    except MissingVariable as exc:
        return _block(ctx, row, contact, f"template_variable:{exc.path}")
    except RenderFailure:
        return _block(ctx, row, contact, "render_error")
    if contact.email is None:
        return _block(ctx, row, contact, "render_error")
    subject, in_reply_to = rendered.subject, None
    if step.reply_to_previous:  # D6
        ctx.write_deferred()  # the previous message may be this batch's
        previous = ctx.session.execute(
            select(Message.subject, Message.message_id)
            .where(
                Message.workspace_id == ctx.workspace_id,
                Message.enrollment_id == row.id,
                Message.channel == "email",
            )
            .order_by(Message.id.desc())
            .limit(1)
        ).first()
        if previous is not None:
            base_subject = previous[0] or ""
            subject = base_subject if base_subject.lower().startswith("re:") else f"Re: {base_subject}"
            in_reply_to = previous[1]
    defer_message(
        ctx,
        message_row(
            ctx,
            key=key,
            contact=contact,
            enrollment=row,
            step_id=step.id,
            channel="email",
            recipient=contact.email,
            sender=mailbox.from_,
            mailbox=mailbox_id,
            template=template_id,
            variant=template_id if variant is not None else None,
            subject=subject,
            text=rendered.text,
            html=rendered.html,
            in_reply_to=in_reply_to,
            domain=_domain(mailbox.from_),
        ),
    )
    caps.count(mailbox_id) if mailbox_id in caps.days else None
    ctx.log(
        "message.sent",
        contact,
        channel="email",
        to=contact.email,
        sequence=row.sequence_id,
        step=step.id,
        template=template_id,
        variant=template_id if variant is not None else None,
        subject=subject,
        mailbox=mailbox_id,
    )
    return True


def _send_sms(ctx: Ctx, row: Enrollment, step: SmsStep, contact: ContactView, occurrence: str) -> bool:
    if not contact.phone:
        return _block(ctx, row, contact, "missing_phone")
    template = ctx.workspace.templates.get(step.template)
    if not isinstance(template, SmsTemplate):
        return _block(ctx, row, contact, "render_error")
    key = f"enrollment:{row.id}:{occurrence}"
    try:
        rendered = render_sms(template, _render_context(ctx, row, contact, key))
    except MissingVariable as exc:
        return _block(ctx, row, contact, f"template_variable:{exc.path}")
    except RenderFailure:
        return _block(ctx, row, contact, "render_error")
    defer_message(
        ctx,
        message_row(
            ctx,
            key=key,
            contact=contact,
            enrollment=row,
            step_id=step.id,
            channel="sms",
            recipient=contact.phone,
            sender=step.from_,
            mailbox=None,
            template=step.template,
            variant=None,
            subject=None,
            text=rendered.text,
            html=None,
            in_reply_to=None,
            domain="sms.invalid",
        ),
    )
    ctx.log(
        "message.sent",
        contact,
        channel="sms",
        to=contact.phone,
        sequence=row.sequence_id,
        step=step.id,
        template=step.template,
        subject=None,
        mailbox=step.from_,
    )
    return True


def _postcard(ctx: Ctx, row: Enrollment, step: PostcardStep, contact: ContactView) -> bool:
    address = contact.address or {}
    if not (address.get("line1") and (address.get("city") or address.get("postal_code"))):
        return _block(ctx, row, contact, "missing_address")
    template = ctx.workspace.templates.get(step.template)
    if not isinstance(template, PostcardTemplate | EmailTemplate):
        return _block(ctx, row, contact, "render_error")
    key = f"enrollment:{row.id}:postcard:{row.runs + 1}"
    try:
        if isinstance(template, PostcardTemplate):
            text = render_postcard(template, _render_context(ctx, row, contact, key)).text
        else:
            text = render_email(template, _render_context(ctx, row, contact, key)).text
    except MissingVariable as exc:
        return _block(ctx, row, contact, f"template_variable:{exc.path}")
    except RenderFailure:
        return _block(ctx, row, contact, "render_error")
    ctx.session.add(
        Fulfillment(
            workspace_id=ctx.workspace_id,
            kind="postcard",
            list=step.template,
            contact_id=contact.id,
            enrollment_id=row.id,
            detail={"address": dict(address), "text": text},
            at=ctx.now,
        )
    )
    return True


# -- tasks, waits and rules (S8) ----------------------------------------------------------------


def _task(ctx: Ctx, row: Enrollment, step: TaskStep, contact: ContactView) -> None:
    try:
        title = render_sms(SmsTemplate(sms=step.title), _render_context(ctx, row, contact, f"task:{row.id}"))
        text = title.text
    except (MissingVariable, RenderFailure):
        text = step.title
    assignee = contact.owner if step.assignee == "owner" else step.assignee
    if not assignee:  # S8: else the workspace default user, the owner of the default mailbox
        default = ctx.workspace.default_mailbox
        assignee = default.id if default is not None else "unassigned"
    due = ctx.now + timedelta(days=step.due.days, hours=step.due.hours, minutes=step.due.minutes)
    ctx.session.add(
        Task(
            workspace_id=ctx.workspace_id,
            contact_id=contact.id,
            enrollment_id=row.id,
            sequence_id=row.sequence_id,
            step_id=step.id,
            title=text,
            assignee=assignee,
            due_at=due,
            created_at=ctx.now,
        )
    )
    ctx.log(
        "task.created",
        contact,
        sequence=row.sequence_id,
        step=step.id,
        title=text,
        assignee=assignee,
        due=due.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def _wait_over(ctx: Ctx, row: Enrollment, step: WaitUntilStep, contact: ContactView) -> bool:
    if evaluate(step.until, contact, ctx.now):
        return True
    if row.wait_deadline is None:
        deadline = (
            ctx.now
            + timedelta(days=step.timeout.days, hours=step.timeout.hours, minutes=step.timeout.minutes)
            if step.timeout is not None
            else FOREVER
        )
        row.wait_deadline = deadline
        row.due_at = None if deadline == FOREVER else deadline
        return False
    if ctx.now >= row.wait_deadline:
        return True
    row.due_at = None if row.wait_deadline == FOREVER else row.wait_deadline
    return False


def _rule(
    ctx: Ctx, row: Enrollment, sequence: SequenceDef, step: RuleStep, contact: ContactView, occurrence: str
) -> ContactView:
    from dripflow.engine.actions import apply_action

    holds = step.if_ is None or evaluate(step.if_, contact, ctx.now)
    actions = step.then if holds else step.else_
    _record(ctx, row, contact, step, occurrence, "executed", "then" if holds else "else")
    ctx.log("step.executed", contact, sequence=row.sequence_id, step=step.id, type=step.type)
    _reached(ctx, row, contact, step)
    for action in actions:
        match action:
            case Goto(arg=target):
                if row.loops >= sequence.max_loops:
                    ctx.log(
                        "step.skipped", contact, sequence=row.sequence_id, step=step.id, reason="max_loops"
                    )
                    continue
                row.loops += 1
                target_step = sequence.step(target)
                if target_step is None:
                    continue
                row.last_step = step.id
                row.base_at = ctx.now
                row.next_step = target
                row.due_at = step_due(timing_of(target_step), timing_context(ctx, sequence, contact), ctx.now)
                return contact
            case Complete(arg=reason):
                close(ctx, row, contact, "completed", reason)
                return contact
            case _:
                ctx.write_deferred()  # an action may read (or delete) anything
                apply_action(ctx, contact, action, by=f"step:{row.sequence_id}.{step.id}", depth=0)
                contact = refresh_view(ctx, contact.id) or contact
                if row.open_key is None:
                    return contact
    _advance(ctx, row, sequence, contact, step)
    return contact
