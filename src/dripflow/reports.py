"""Reports (issue 6): what each step, split-test variant (S9) and broadcast achieved, and how often
each automation fired. Read from what the engine already keeps: the outbox (``messages``), the
facts the tracking links and bounce reports record, enrollments, contacts and the journal.

Counts are of messages (one per contact per step occurrence, B3 for broadcasts), each counted once
per metric however many times it was opened or clicked ("unique" opens and clicks):

* ``sent``: handed to the mail server (``sent``; ``bounced`` when it refused the recipient) or kept
  in the capture outbox (``captured``, SPEC §10), or bounced after a try; not those still queued,
  failed or canceled.
* ``delivered``: sent and not bounced (no bounce status, no ``email.bounced`` for it).
* ``opened``: an ``email.opened`` or a ``link.clicked`` for it (a click proves an open that a
  blocked pixel did not show). ``clicked``, ``replied``, ``bounced`` (hard or soft),
  ``complained``: the matching event for it.
* ``unsubscribed``: the contact left (everything, or the sequence) after it, and it was the
  latest email they had (of that sequence, when they left only the sequence). Unsubscribe events
  do not name their email, so this is the email the link was most likely in.

Test messages (``POST /v1/broadcasts/{id}/test-send``) belong to no broadcast and no contact and are
never counted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, case, exists, func, not_, or_, select
from sqlalchemy.orm import Session

from dripflow.core.model import Sequence as SequenceDef
from dripflow.core.steps_model import EmailStep, SmsStep
from dripflow.store.tables import Contact, Enrollment, Fact, JournalEntry, Message

__all__ = [
    "AutomationCount",
    "Counts",
    "StepReport",
    "VariantReport",
    "automation_counts",
    "broadcast_counts",
    "sequence_report",
]

_BATCH = 1000


@dataclass
class Counts:
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    replied: int = 0
    bounced: int = 0
    unsubscribed: int = 0
    complained: int = 0

    def add(self, other: Counts) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))


@dataclass
class VariantReport:
    variant: str | None  # the variant's template (S9); None for a step without variants
    counts: Counts = field(default_factory=Counts)


@dataclass
class StepReport:
    step: str
    type: str
    removed: bool  # no longer in the sequence's current definition (S7)
    counts: Counts = field(default_factory=Counts)
    variants: list[VariantReport] = field(default_factory=list)


# -- per message ---------------------------------------------------------------------------------


def _has(kind: str) -> ColumnElement[bool]:
    """The message has a fact of ``kind`` naming it (tracking, replies, bounce reports)."""
    return exists().where(
        Fact.workspace_id == Message.workspace_id,
        Fact.contact_id == Message.contact_id,
        Fact.kind == kind,
        Fact.detail["message"].as_string() == Message.message_id,
    )


def _metrics() -> dict[str, ColumnElement[bool]]:
    bounce_fact = _has("email.bounced")
    return {
        "sent": or_(Message.status.in_(("sent", "bounced", "captured")), bounce_fact),
        "delivered": and_(Message.status.in_(("sent", "captured")), not_(bounce_fact)),
        "opened": or_(_has("email.opened"), _has("link.clicked")),
        "clicked": _has("link.clicked"),
        "replied": _has("email.replied"),
        "bounced": or_(Message.status == "bounced", bounce_fact),
        "complained": _has("email.complained"),
    }


def _grouped(session: Session, where: ColumnElement[bool]) -> dict[tuple[str | None, str | None], Counts]:
    """Counts of the messages matching ``where`` by (step, variant), in one query."""
    metrics = _metrics()
    columns = [func.sum(case((condition, 1), else_=0)).label(name) for name, condition in metrics.items()]
    rows = session.execute(
        select(Message.step_id, Message.variant, *columns)
        .where(where)
        .group_by(Message.step_id, Message.variant)
    ).all()
    found: dict[tuple[str | None, str | None], Counts] = {}
    for row in rows:
        found[row[0], row[1]] = Counts(
            **{name: int(value or 0) for name, value in zip(metrics, row[2:], strict=True)}
        )
    return found


def _unsubscribed(
    session: Session, workspace_id: str, where: ColumnElement[bool], sequence_id: str | None
) -> dict[tuple[str | None, str | None], int]:
    """Messages matching ``where`` that were the contact's latest email before they unsubscribed
    (see the module docstring), by (step, variant)."""
    reached = select(Message.contact_id).where(where).distinct().scalar_subquery()
    leaving: list[tuple[int, datetime, str | None]] = [
        (contact_id, at, None)
        for contact_id, at in session.execute(
            select(Contact.id, Contact.unsubscribed_at).where(
                Contact.workspace_id == workspace_id,
                Contact.unsubscribed_at.is_not(None),
                Contact.id.in_(reached),
            )
        )
        if at is not None
    ]
    if sequence_id is not None:
        leaving += [
            (contact_id, at, sequence_id)
            for contact_id, at in session.execute(
                select(Enrollment.contact_id, Enrollment.closed_at).where(
                    Enrollment.workspace_id == workspace_id,
                    Enrollment.sequence_id == sequence_id,
                    Enrollment.status == "canceled",
                    Enrollment.reason == "unsubscribed",
                )
            )
            if at is not None
        ]
    if not leaving:
        return {}
    emails = _emails_of(session, workspace_id, {contact_id for contact_id, _, _ in leaving})
    chosen: set[int] = set()
    for contact_id, at, only in leaving:
        candidates = [m for m in emails.get(contact_id, ()) if m[1] <= at and (only is None or m[2] == only)]
        if candidates:
            chosen.add(max(candidates, key=lambda m: (m[1], m[0]))[0])
    counted: dict[tuple[str | None, str | None], int] = defaultdict(int)
    if chosen:
        for step_id, variant in session.execute(
            select(Message.step_id, Message.variant).where(where, Message.id.in_(sorted(chosen)))
        ):
            counted[step_id, variant] += 1
    return counted


def _emails_of(
    session: Session, workspace_id: str, contact_ids: Iterable[int]
) -> dict[int, list[tuple[int, datetime, str | None]]]:
    """Each contact's emails as (id, created, sequence), a batch of contacts per query."""
    wanted = sorted(contact_ids)
    found: dict[int, list[tuple[int, datetime, str | None]]] = defaultdict(list)
    for start in range(0, len(wanted), _BATCH):
        for message_id, contact_id, created_at, sequence_id in session.execute(
            select(Message.id, Message.contact_id, Message.created_at, Message.sequence_id).where(
                Message.workspace_id == workspace_id,
                Message.channel == "email",
                Message.contact_id.in_(wanted[start : start + _BATCH]),
            )
        ):
            found[contact_id].append((message_id, created_at, sequence_id))
    return found


def _counts_by_group(
    session: Session, workspace_id: str, where: ColumnElement[bool], sequence_id: str | None
) -> dict[tuple[str | None, str | None], Counts]:
    groups = _grouped(session, where)
    for group, count in _unsubscribed(session, workspace_id, where, sequence_id).items():
        groups.setdefault(group, Counts()).unsubscribed += count
    return groups


# -- reports -------------------------------------------------------------------------------------


def sequence_report(
    session: Session, workspace_id: str, sequence_id: str, definition: SequenceDef | None
) -> tuple[Counts, list[StepReport]]:
    """Totals and, per email or SMS step in the current order (then steps since removed), its
    counts and those of each variant."""
    where = and_(Message.workspace_id == workspace_id, Message.sequence_id == sequence_id)
    groups = _counts_by_group(session, workspace_id, where, sequence_id)
    steps: dict[str, StepReport] = {}
    for step in definition.steps if definition is not None else ():
        if isinstance(step, EmailStep | SmsStep):
            report = StepReport(step.id, step.type, removed=False)
            if isinstance(step, EmailStep):
                report.variants = [VariantReport(variant.template) for variant in step.variants or ()]
            steps[step.id] = report
    for step_id, variant in sorted(groups, key=lambda key: (str(key[0]), str(key[1]))):
        if step_id is None:
            continue
        if step_id not in steps:
            steps[step_id] = StepReport(
                step_id, _channel(session, workspace_id, sequence_id, step_id), removed=True
            )
        report = steps[step_id]
        if variant is not None and all(item.variant != variant for item in report.variants):
            report.variants.append(VariantReport(variant))
    totals = Counts()
    for report in steps.values():
        for (step_id, variant), counts in groups.items():
            if step_id != report.step:
                continue
            report.counts.add(counts)
            for item in report.variants:
                if item.variant == variant:
                    item.counts.add(counts)
        totals.add(report.counts)
    return totals, list(steps.values())


def _channel(session: Session, workspace_id: str, sequence_id: str, step_id: str) -> str:
    channel = session.scalar(
        select(Message.channel)
        .where(
            Message.workspace_id == workspace_id,
            Message.sequence_id == sequence_id,
            Message.step_id == step_id,
        )
        .limit(1)
    )
    return str(channel or "email")


def broadcast_counts(session: Session, workspace_id: str, broadcast_id: str) -> Counts:
    where = and_(Message.workspace_id == workspace_id, Message.broadcast_id == broadcast_id)
    totals = Counts()
    for counts in _counts_by_group(session, workspace_id, where, None).values():
        totals.add(counts)
    return totals


# -- automations ---------------------------------------------------------------------------------


@dataclass
class AutomationCount:
    fired: int = 0
    skipped: int = 0  # its trigger matched but its `if` was false, or it had run for that event (A3)
    last_fired_at: datetime | None = None


def automation_counts(session: Session, workspace_id: str) -> dict[str, AutomationCount]:
    """How often each automation fired and was passed over, from the journal."""
    name = JournalEntry.data["automation"].as_string()
    found: dict[str, AutomationCount] = defaultdict(AutomationCount)
    rows = session.execute(
        select(name, JournalEntry.kind, func.count(), func.max(JournalEntry.at))
        .where(
            JournalEntry.workspace_id == workspace_id,
            JournalEntry.kind.in_(("automation.fired", "automation.skipped")),
        )
        .group_by(name, JournalEntry.kind)
    )
    for automation, kind, count, last in rows:
        item = found[str(automation)]
        if kind == "automation.fired":
            item.fired = int(count)
            item.last_fired_at = _aware(last)
        else:
            item.skipped = int(count)
    return dict(found)


def _aware(value: datetime | None) -> datetime | None:
    """A MAX() read back naive (SQLite) is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
