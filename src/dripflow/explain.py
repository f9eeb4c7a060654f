"""`explain` (SPEC X5): the story of one contact, in plain sentences, in time order.

Told from the engine's journal (the same records as the simulation log), so it says what the
engine actually decided and which rule decided it, then what happens next and when.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dripflow.store.contacts import ContactRepo
from dripflow.store.tables import Enrollment, JournalEntry

__all__ = ["Upcoming", "explain_contact", "story", "upcoming"]

_NOT_ENROLLED = {
    "already_enrolled": "the contact was already in it (S1)",
    "reenroll_never": "the sequence does not let a contact enter twice (S2: reenroll never)",
    "cooldown": "the re-enrollment cooldown had not passed (S2)",
    "in_other_sequence": "the contact was in another sequence and multi_sequence is deny (S3)",
    "excluded": "the contact matched an exclusion rule (S4)",
    "blacklisted": "the contact is blacklisted (L2)",
    "unsubscribed": "the contact unsubscribed from everything (L3)",
    "missing_routing": "an email step has no mailbox to send from (S10)",
    "sequence_archived": "the sequence is archived",
}
_HELD = {
    "outside_schedule": "outside the sequence's send window; it waits for the window to open (T6)",
    "excluded_date": "on an excluded date of the send schedule; it waits for the next open day (T6)",
    "daily_cap": "the mailbox reached its daily cap; it waits for the mailbox's next day (D4)",
    "frequency_cap": "the contact reached the frequency cap; it waits until another email fits (D7)",
}
_SKIPPED = {
    "recipients": "the contact did not match the sequence's recipients filter (S6)",
    "missed_window": "its date had passed by more than date_step_grace when it was reached (T8)",
    "max_loops": "the enrollment had followed its gotos max_loops times (S8)",
}


@dataclass(frozen=True)
class Upcoming:
    sequence: str
    status: str
    reason: str | None
    next_step: str | None
    due_at: datetime | None
    waiting: bool = False  # a wait_until step is waiting for its condition (S8)


def _sentence(record: dict[str, Any]) -> str:
    kind = record["kind"]
    seq = record.get("sequence")
    reason = record.get("reason")
    by = f" (by {record['by']})" if record.get("by") else ""
    if kind == "contact.status":
        if reason == "created":
            return f"The contact was created (lead status {record['status']})."
        if reason == "suppressed":  # its address was deleted while blacklisted or unsubscribed
            state = "blacklisted" if record["status"] == "blacklisted" else "unsubscribed from everything"
            return (
                f"The contact was created {state}, as its address was when a contact with it was "
                "deleted (a suppression: L2, L3)."
            )
        return f"The contact's lead status became {record['status']}" + (f" ({reason})." if reason else ".")
    if kind == "automation.fired":
        return f"Automation '{record['automation']}' fired on {record['event']}."
    if kind == "automation.skipped":
        if reason == "once":
            why = "it had already run for this event (A3)"
        elif reason == "created_later":
            why = "it was added after this event happened (A4)"
        else:
            why = f"its condition was false: {reason}"
        return f"Automation '{record['automation']}' did not fire on {record['event']}: {why}."
    if kind == "automation.cut":
        return f"A cascade was cut at depth {record.get('depth')} on {record['event']} (A3)."
    if kind == "action.applied":
        return f"Action {record['action']} {record.get('value')!r} was applied{by}."
    if kind == "not_enrolled":
        detail = f" ({record['detail']})" if record.get("detail") else ""
        return f"Not enrolled in '{seq}'{by}: {_NOT_ENROLLED.get(reason or '', reason)}{detail}."
    if kind == "enrollment.status":
        status = record["status"]
        if status == "active" and by:
            return f"Entered sequence '{seq}'{by}."
        if status == "draft":
            return f"Entered sequence '{seq}'{by} while it is a draft: nothing runs until it is activated."
        if status == "paused":
            return f"'{seq}' is paused: nothing is sent until it resumes (S5)."
        if status == "queued":
            return f"A step of '{seq}' was held: {_HELD.get(reason or '', reason)}."
        if status == "blocked":
            what = (
                f"the template needs {reason.split(':', 1)[1]}, which the contact does not have"
                if reason and reason.startswith("template_variable:")
                else reason
            )
            return f"'{seq}' is blocked: {what}; it retries when the contact is updated (S11)."
        if status == "finished":
            return f"Finished the last step of '{seq}'; the contact stays in it for steps added later (S13)."
        if status == "active":
            return f"'{seq}' went on."
        return f"Left '{seq}': {status}" + (f" ({reason})." if reason else ".")
    if kind == "message.sent" and record.get("broadcast"):
        subject = f' "{record["subject"]}"' if record.get("subject") else ""
        return (
            f"Sent the broadcast '{record['broadcast']}'{subject} to {record['to']} "
            f"(template {record['template']}, from {record.get('mailbox')})."
        )
    if kind == "broadcast.skipped":
        capped = "the contact already had as many marketing emails as the frequency cap allows (D7)"
        because = capped if reason == "frequency_cap" else str(reason)
        return f"The broadcast '{record['broadcast']}' was not sent to the contact: {because}."
    if kind == "message.sent":
        variant = f", split-test variant {record['variant']}" if record.get("variant") else ""
        subject = f' "{record["subject"]}"' if record.get("subject") else ""
        return (
            f"Sent {record['channel']}{subject} to {record['to']}: step '{record.get('step')}' of "
            f"'{seq}' (template {record['template']}{variant}, from {record.get('mailbox')})."
        )
    if kind == "step.skipped":
        return f"Skipped step '{record['step']}' of '{seq}': {_SKIPPED.get(reason or '', reason)}."
    if kind == "step.executed":
        return f"Ran the {record['type']} step '{record['step']}' of '{seq}'."
    if kind == "task.created":
        return f'Created the task "{record["title"]}" for {record["assignee"]}, due {record["due"]}.'
    if kind == "webhook.queued":
        return f"Queued a webhook to {record['url']} ({record['event']})."
    return f"{kind}: {record}"


def story(records: Iterable[dict[str, Any]], ahead: Sequence[Upcoming]) -> list[str]:
    """The lines of the explanation: each journal record, then what happens next."""
    lines = [f"{record['at']}  {_sentence(record)}" for record in records]
    for item in ahead:
        if item.status == "active" and item.waiting and item.next_step:
            latest = (
                f", or at {item.due_at.strftime('%Y-%m-%dT%H:%M:%SZ')} at the latest" if item.due_at else ""
            )
            where = f"Next: '{item.sequence}' waits at step '{item.next_step}'"
            lines.append(f"{where} until its condition holds{latest} (S8).")
        elif item.status in ("active", "queued") and item.due_at is not None and item.next_step:
            when = item.due_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            lines.append(f"Next: step '{item.next_step}' of '{item.sequence}' is due at {when}.")
        elif item.status == "finished":
            lines.append(f"Next: nothing is due in '{item.sequence}' until a step is added (T9).")
        elif item.status == "blocked":
            lines.append(f"Next: '{item.sequence}' waits for the contact to be updated ({item.reason}).")
        elif item.status == "paused":
            lines.append(f"Next: '{item.sequence}' is paused; nothing is sent until it resumes (S5).")
        elif item.status == "draft":
            lines.append(f"Next: '{item.sequence}' is a draft; nothing is sent until it is activated.")
        elif item.next_step:
            lines.append(
                f"Next: '{item.sequence}' waits until the task of step '{item.next_step}' is completed (S8)."
            )
    if not ahead:
        lines.append("Next: the contact is in no sequence; nothing is scheduled.")
    return lines


def upcoming(session: Session, workspace_id: str, contact_id: int) -> list[Upcoming]:
    rows = session.scalars(
        select(Enrollment)
        .where(
            Enrollment.workspace_id == workspace_id,
            Enrollment.contact_id == contact_id,
            Enrollment.open_key.is_not(None),
        )
        .order_by(Enrollment.id)
    )
    return [
        Upcoming(r.sequence_id, r.status, r.reason, r.next_step, r.due_at, r.wait_deadline is not None)
        for r in rows
    ]


def explain_contact(
    session: Session, workspace_id: str, contact_ref: str, sequence: str | None = None
) -> list[str]:
    """X5 on a database: the contact by email or id, optionally only one sequence's story."""
    contact = ContactRepo(session, workspace_id).get(contact_ref)
    if contact is None:
        raise LookupError(f"no contact {contact_ref!r} in workspace {workspace_id!r}")
    records = [
        {"at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), **data}
        for at, data in session.execute(
            select(JournalEntry.at, JournalEntry.data)
            .where(JournalEntry.workspace_id == workspace_id, JournalEntry.contact_id == contact.id)
            .order_by(JournalEntry.at, JournalEntry.id)
        )
    ]
    ahead = upcoming(session, workspace_id, contact.id)
    if sequence is not None:
        records = [r for r in records if r.get("sequence") in (None, sequence)]
        ahead = [item for item in ahead if item.sequence == sequence]
    return story(records, ahead)
