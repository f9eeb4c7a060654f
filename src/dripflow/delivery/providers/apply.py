"""Applying a provider's events (SPEC D5, L1, L2, D3): each to the contact of the message it names.

A provider's account sends more than this workspace's mail (other workspaces, other programs), so
a batch may name messages that are not ours. Such an event is *ignored* — not applied, reported
back with the reason — and the rest of the batch is applied: a provider retries a refused request
whole, and one stranger must not hold back the bounces and complaints of our own messages.

* An event naming a Message-ID counts only if the message is in this workspace's outbox; its
  contact is the one the message was sent to (never a contact made up from the address).
* An event with no Message-ID (SendGrid sends none with some engagement events) goes to the
  contact of this workspace with the event's address, if there is one.

All of a request's events are applied in one transaction, each in its own savepoint, through the
one ingestion path (:func:`dripflow.engine.ingest.ingest`), at the time of receipt. Their ``id``
makes a request delivered again apply nothing twice (D3); keys are per workspace.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from dripflow.core.addresses import InvalidAddress
from dripflow.core.clock import VirtualClock
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.ingest import IngestError, ingest
from dripflow.store.contacts import ContactRepo
from dripflow.store.database import transaction
from dripflow.store.tables import Message
from dripflow.store.workspaces import rules_key

__all__ = ["Applied", "apply_provider_events"]

_log = logging.getLogger("dripflow.providers")


@dataclass(frozen=True)
class Applied:
    """What became of one event."""

    event: dict[str, Any]
    outcome: Literal["applied", "duplicate", "ignored"]
    reason: str | None = None


def apply_provider_events(
    engine: Engine, workspace_id: str, events: Sequence[dict[str, Any]], now: datetime
) -> list[Applied]:
    results: list[Applied] = []
    clock = VirtualClock(now)
    with transaction(engine) as session:
        for event in events:
            contact_id, reason = _owner(session, workspace_id, event)
            if contact_id is None:
                results.append(_ignored(workspace_id, event, reason))
                continue
            try:
                with session.begin_nested():
                    ctx = Ctx(session, workspace_id, load_rules(session, workspace_id), clock)
                    outcome = ingest(ctx, {**event, "contact": str(contact_id)})
            except IngestError as exc:
                session.info.pop(rules_key(workspace_id), None)  # it may hold a rolled-back edit
                results.append(_ignored(workspace_id, event, str(exc)))
                continue
            results.append(Applied(event, "applied" if outcome.applied else "duplicate"))
    return results


def _owner(session: Session, workspace_id: str, event: dict[str, Any]) -> tuple[int | None, str]:
    """The id of the contact the event is about, or None and why not."""
    message_id = event.get("message")
    if message_id:
        contact_id = session.scalar(
            select(Message.contact_id).where(
                Message.workspace_id == workspace_id, Message.message_id == str(message_id)
            )
        )
        if contact_id is None:
            return None, f"no message {message_id} was sent from this workspace"
        return int(contact_id), ""
    try:
        row = ContactRepo(session, workspace_id).get(str(event.get("contact") or ""))
    except InvalidAddress:
        row = None
    if row is None:
        return None, "the event names no message, and this workspace has no contact with its address"
    return int(row.id), ""


def _ignored(workspace_id: str, event: dict[str, Any], reason: str) -> Applied:
    _log.info(
        "provider event ignored",
        extra={
            "event": "provider.ignored",
            "workspace": workspace_id,
            "fields": {"type": event.get("type"), "id": event.get("id"), "reason": reason},
        },
    )
    return Applied(event, "ignored", reason)
