"""CSV export of a workspace's contacts, streamed, and safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from typing import IO, Any

from sqlalchemy import Engine, select

from dripflow.csvio.columns import ADDRESS_COLUMNS, CONTACT_COLUMNS
from dripflow.store.database import transaction
from dripflow.store.tables import Contact, ContactList, ContactTag

BATCH_SIZE = 2000
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def neutralize(cell: str) -> str:
    """Defuse spreadsheet formula injection (OWASP CSV injection).

    A cell that a spreadsheet would run as a formula gets a leading apostrophe; plain signed numbers
    such as an E.164 phone number `+15550100123` are left as they are, since they cannot run anything.
    """
    if cell.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def export_contacts(engine: Engine, workspace_id: str, out: IO[str], field_keys: Sequence[str]) -> int:
    """Write every contact of the workspace as CSV; returns how many were written."""
    header = [
        "id",
        *CONTACT_COLUMNS,
        *ADDRESS_COLUMNS,
        "score",
        "lead_status",
        "lead_status_reason",
        "lists",
        "tags",
        *field_keys,
        "created_at",
    ]
    writer = csv.writer(out)
    writer.writerow(header)
    written = 0
    with transaction(engine) as session:
        last_id = 0
        while True:
            contacts = list(
                session.scalars(
                    select(Contact)
                    .where(Contact.workspace_id == workspace_id, Contact.id > last_id)
                    .order_by(Contact.id)
                    .limit(BATCH_SIZE)
                )
            )
            if not contacts:
                return written
            ids = [contact.id for contact in contacts]
            lists = _grouped(
                session.execute(
                    select(ContactList.contact_id, ContactList.list)
                    .where(ContactList.contact_id.in_(ids), ContactList.unsubscribed_at.is_(None))
                    .order_by(ContactList.list)
                )
            )
            tags = _grouped(
                session.execute(
                    select(ContactTag.contact_id, ContactTag.tag)
                    .where(ContactTag.contact_id.in_(ids))
                    .order_by(ContactTag.tag)
                )
            )
            for contact in contacts:
                address = contact.address or {}
                custom = contact.fields or {}
                row: list[Any] = [
                    contact.id,
                    *(getattr(contact, name) for name in CONTACT_COLUMNS),
                    *(address.get(name) for name in ADDRESS_COLUMNS),
                    contact.score,
                    contact.lead_status,
                    contact.lead_status_reason,
                    ";".join(lists.get(contact.id, [])),
                    ";".join(tags.get(contact.id, [])),
                    *(custom.get(key) for key in field_keys),
                    contact.created_at.isoformat(),
                ]
                writer.writerow([neutralize("" if value is None else str(value)) for value in row])
            written += len(contacts)
            last_id = ids[-1]
            session.expunge_all()


def _grouped(rows: Any) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for contact_id, value in rows:
        grouped.setdefault(contact_id, []).append(value)
    return grouped
