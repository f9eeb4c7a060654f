"""Bounce and complaint reports in (SPEC D5): raw RFC 3464 / RFC 5965 messages become
``email.bounced`` / ``email.complained`` events, applied through the one ingestion path.

A report names the original message by its Message-ID; the outbox row tells whose it was, so the
event is applied to that contact (never to a new contact made up from a recipient address).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from dripflow.core.errors import UserError
from dripflow.delivery.inbound import NotAReport, parse_report
from dripflow.engine.eventfile import InputEvent
from dripflow.engine.ingest_file import IngestReport, ingest_events
from dripflow.store.contacts import ContactRepo
from dripflow.store.database import transaction
from dripflow.store.tables import Message

__all__ = ["ReportFile", "ingest_reports"]


@dataclass(frozen=True)
class ReportFile:
    name: str
    raw: bytes


def ingest_reports(
    engine: Engine, workspace_id: str, files: Sequence[ReportFile], now: datetime
) -> IngestReport:
    """Apply the events of every report, all or none; a problem names its file."""
    events: list[InputEvent] = []
    problems: list[str] = []
    with transaction(engine) as session:
        repo = ContactRepo(session, workspace_id)
        for number, item in enumerate(files, start=1):
            try:
                found = parse_report(item.raw)
            except NotAReport as exc:
                problems.append(f"{item.name}: {exc}")
                continue
            for event in found:
                contact = _owner(session, workspace_id, repo, event)
                if contact is None:
                    problems.append(
                        f"{item.name}: no message {event.get('message')!r} and no contact "
                        f"{event.get('contact')!r} in workspace {workspace_id!r}"
                    )
                    continue
                events.append(InputEvent(number, now, {**event, "contact": contact}))
    if problems:
        raise UserError("\n".join([*problems, "nothing was applied"]))
    return ingest_events(engine, workspace_id, events, Path("reports"))


def _owner(session: Session, workspace_id: str, repo: ContactRepo, event: dict[str, Any]) -> str | None:
    """The contact (as its id) the report is about: the original message's, else the address's."""
    message_id = event.get("message")
    if message_id:
        contact_id = session.scalar(
            select(Message.contact_id).where(
                Message.workspace_id == workspace_id, Message.message_id == message_id
            )
        )
        if contact_id is not None:
            return str(contact_id)
    address = event.get("contact")
    if address:
        row = repo.get(str(address))
        if row is not None:
            return str(row.id)
    return None
