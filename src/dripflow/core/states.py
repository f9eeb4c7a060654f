"""The enrollment state machine's decisions (SPEC §5, §6), as pure functions of data.

The scheduler and the enrollment code call these and only carry out what they decide, so every
rule here is tested without a database: whether a contact may enter a sequence (S1–S4, S10, L2,
L3), which step comes next after live edits (S7), the split-test arm (S9) and the mailbox (S10, D8).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from dripflow.core.conditions import evaluate
from dripflow.core.contact_view import OPEN_STATUSES, ContactView
from dripflow.core.model import Sequence as SequenceDef
from dripflow.core.model import Workspace
from dripflow.core.steps_model import EmailStep, StepNode, Variant

__all__ = [
    "CLOSED_STATUSES",
    "OPEN_STATUSES",
    "PriorEnrollment",
    "choose_mailbox",
    "choose_variant",
    "enrollment_refusal",
    "matching_exclusion",
    "next_step",
    "repoint_last_step",
    "route_mailbox",
]

Status = Literal[
    "draft",
    "active",
    "queued",
    "blocked",
    "paused",
    "finished",
    "completed",
    "canceled",
    "excluded",
    "bounced",
]
NotEnrolledReason = Literal[
    "already_enrolled",
    "reenroll_never",
    "cooldown",
    "in_other_sequence",
    "excluded",
    "blacklisted",
    "unsubscribed",
    "missing_routing",
    "sequence_archived",
]
CLOSED_STATUSES: frozenset[str] = frozenset({"completed", "canceled", "excluded", "bounced"})


@dataclass(frozen=True, slots=True)
class PriorEnrollment:
    """What enrollment needs to know of the contact's enrollments, open or closed."""

    sequence: str
    status: str
    closed_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


def matching_exclusion(workspace: Workspace, contact: ContactView, now: datetime) -> str | None:
    """The name of the first ruleset exclusion the contact matches, else None (S4)."""
    for exclusion in workspace.ruleset.exclusions:
        if evaluate(exclusion.if_, contact, now):
            return exclusion.name
    return None


def enrollment_refusal(
    workspace: Workspace,
    sequence: SequenceDef,
    sequence_status: str,
    contact: ContactView,
    prior: Sequence[PriorEnrollment],
    now: datetime,
) -> tuple[NotEnrolledReason, str | None] | None:
    """Why the contact may not enter ``sequence`` now, with a detail, or None when it may.

    Checked in the order a user reads them: the sequence itself, then the contact's standing
    (L2 blacklisted, L3 unsubscribed), S1 (already in it), S2 (re-entry), S3 (another
    sequence), S4 (exclusions) and S10 (an email step that cannot be routed).
    """
    if sequence_status == "archived":
        return "sequence_archived", None
    if contact.lead_status == "blacklisted":
        return "blacklisted", None
    if contact.unsubscribed:
        return "unsubscribed", None
    mine = [item for item in prior if item.sequence == sequence.id]
    if any(item.is_open for item in mine):
        return "already_enrolled", None
    if mine:
        policy = sequence.reenroll if sequence.reenroll is not None else workspace.ruleset.reenroll
        if policy == "never":
            return "reenroll_never", None
        if isinstance(policy, timedelta):
            last_close = max((item.closed_at for item in mine if item.closed_at is not None), default=None)
            if last_close is not None and now - last_close < policy:
                return "cooldown", f"until {(last_close + policy).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    if workspace.ruleset.multi_sequence == "deny":
        others = [item for item in prior if item.sequence != sequence.id and item.status in _UNFINISHED]
        if others:
            return "in_other_sequence", others[0].sequence
    exclusion = matching_exclusion(workspace, contact, now)
    if exclusion is not None:
        return "excluded", exclusion
    for step in sequence.email_steps:
        if route_mailbox(step, sequence, contact, workspace) is None:
            return "missing_routing", step.id
    return None


# S3 speaks of "an open, unfinished enrollment elsewhere": finished ones do not count.
_UNFINISHED = OPEN_STATUSES - {"finished"}


def route_mailbox(
    step: EmailStep, sequence: SequenceDef, contact: ContactView, workspace: Workspace
) -> str | tuple[str, ...] | None:
    """The mailbox an email step sends from (S10), a pool of them (D8), or None if it cannot send.

    The step's own, else the sequence's, else the contact's owner's (a mailbox whose id is the
    owner's name), else the workspace default.
    """
    if step.mailbox is not None:
        return step.mailbox
    if sequence.mailbox is not None:
        return sequence.mailbox
    if contact.owner is not None and workspace.mailbox(contact.owner) is not None:
        return contact.owner
    default = workspace.default_mailbox
    return default.id if default is not None else None


def choose_mailbox(pool: Sequence[str], sent_today: Mapping[str, int], caps: Mapping[str, int]) -> str | None:
    """The mailbox of a pool with the most capacity left today (D8); None when all are at their cap.

    Ties go to the earlier mailbox in the pool, so the choice is deterministic.
    """
    best: tuple[int, int] | None = None
    chosen: str | None = None
    for index, mailbox in enumerate(pool):
        left = caps.get(mailbox, 0) - sent_today.get(mailbox, 0)
        if left <= 0:
            continue
        rank = (-left, index)
        if best is None or rank < best:
            best, chosen = rank, mailbox
    return chosen


def choose_variant(contact_id: int, step_id: str, variants: Sequence[Variant]) -> Variant:
    """The split-test arm for this contact (S9): by weight, deterministic from the two ids.

    A hash rather than a random draw: a retried step, a simulation run twice and a report all
    agree on which arm a contact is in.
    """
    total = sum(variant.weight for variant in variants)
    digest = hashlib.sha256(f"{contact_id}:{step_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % total
    for variant in variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    raise AssertionError("unreachable: the point is below the total weight")


def next_step(sequence: SequenceDef, last_step: str | None, done: Iterable[str] = ()) -> StepNode | None:
    """The step an enrollment runs next (S7): the first active step after ``last_step`` in the
    sequence's *current* order that this enrollment has not already run.

    ``last_step`` None means the start. Inactive steps are passed over with their delay (S7). A
    step already in ``done`` is passed over too: after a reorder that moved a sent step below the
    contact's position, it is not sent a second time. (Gotos re-run steps on purpose; the caller
    passes an empty ``done`` for them.)
    """
    order = [step.id for step in sequence.steps]
    start = 0
    if last_step is not None:
        if last_step not in order:
            raise ValueError(f"step {last_step!r} is not in sequence {sequence.id!r}; repoint it first")
        start = order.index(last_step) + 1
    already = set(done)
    for step in sequence.steps[start:]:
        if step.active and step.id not in already:
            return step
    return None


def repoint_last_step(
    old_order: Sequence[str], new_order: Sequence[str], last_step: str | None
) -> str | None:
    """Where an enrollment stands after its last completed step was removed from the sequence (S7).

    The nearest step before it in the old order that is still there (None: the start). Combined
    with :func:`next_step`'s ``done`` this never sends a step twice nor moves a contact backwards.
    """
    if last_step is None or last_step in new_order:
        return last_step
    if last_step not in old_order:
        return None
    kept = set(new_order)
    for step_id in reversed(old_order[: old_order.index(last_step)]):
        if step_id in kept:
            return step_id
    return None
