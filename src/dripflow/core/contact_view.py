"""What the pure rules may know about one contact: a frozen snapshot loaded by the store.

Conditions (SPEC §3), template rendering (S11) and the enrollment rules read a contact only
through this view, never through the database, so they stay pure functions of data and can be
tested without a store. The engine loads views in bulk (one query per table for a batch of
contacts) and rebuilds a view after it changes the contact.

Facts use one vocabulary shared by ingestion and conditions: ``kind`` is the SPEC §3 event type
that recorded the fact (``product.purchased``, ``webinar.attended``, ``email.opened`` …), ``key``
the value of that event's main field (the product, page, video, webinar, calendar, survey, link or
membership name; ``None`` for email events), and ``detail`` the event's other fields (``amount``,
``level``, ``variant``, ``answers``, ``score``, and for email events ``sequence``, ``step``,
``broadcast``, ``message``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["OPEN_STATUSES", "ContactView", "EnrollmentView", "FactView"]

# SPEC S1: the statuses of an enrollment that is still "in" its sequence.
OPEN_STATUSES: frozenset[str] = frozenset({"draft", "active", "queued", "blocked", "paused", "finished"})


@dataclass(frozen=True, slots=True)
class FactView:
    """One fact in the contact's history (see the module docstring for the vocabulary)."""

    kind: str
    key: str | None
    at: datetime
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EnrollmentView:
    """The contact's latest enrollment in one sequence.

    ``reached_steps``: ids of the steps it has executed (sent, run or skipped past), across its
    enrollments in that sequence. ``ever_finished``: it ran the sequence's last step at least once.
    """

    sequence: str
    status: str
    reached_steps: frozenset[str] = frozenset()
    ever_finished: bool = False

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True, slots=True)
class ContactView:
    """A contact's state. ``lists`` holds only current subscriptions; ``unsubscribed`` is global (L3)."""

    id: int
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = None
    source: str | None = None
    owner: str | None = None
    address: Mapping[str, str | None] | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    score: int = 0
    lead_status: str = "inactive"
    unsubscribed: bool = False
    lists: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    facts: tuple[FactView, ...] = ()
    enrollments: tuple[EnrollmentView, ...] = ()

    @property
    def email_domain(self) -> str | None:
        if self.email is None or "@" not in self.email:
            return None
        return self.email.rsplit("@", 1)[1].lower()

    def enrollment(self, sequence: str) -> EnrollmentView | None:
        return next((item for item in self.enrollments if item.sequence == sequence), None)

    def facts_of(self, kind: str, key: str | None = None) -> tuple[FactView, ...]:
        """Facts of one kind (and key, when given), oldest first."""
        return tuple(f for f in self.facts if f.kind == kind and (key is None or f.key == key))
