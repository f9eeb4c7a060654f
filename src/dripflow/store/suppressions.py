"""Suppressions (table ``suppressions``): a deleted contact's blacklisting or global unsubscribe
outlives it (SPEC L2, L3, L5).

Deleting a contact (one by hand, or many in a clean-up) first calls :func:`remember`: a blacklisted
contact leaves ``blacklisted`` with its reason, one unsubscribed from everything leaves
``unsubscribed`` with when, anyone else clears what an earlier deletion of the address left. When
a contact is created, :func:`restore` gives it that state back, so an old CSV imported again, or a
form filled in by a spam trap, never makes a deleted complainer mailable. A restored blacklisting
is lifted as any is, by an explicit whitelisting (L2); a restored unsubscribe stands as any does.

Addresses are kept as a SHA-256 of their normalised form only: the row recognises the address
when it returns, and tells nobody what it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, MutableMapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.orm import Session

from dripflow.store.database import dialect_insert
from dripflow.store.tables import Contact, Suppression

__all__ = ["address_hash", "remember", "restore", "restore_many"]

_S = Suppression.__table__.c
_C = Contact.__table__.c
_ONE = select(_S.status, _S.reason, _S.since).where(
    _S.workspace_id == bindparam("workspace_id"), _S.address_hash == bindparam("address_hash")
)


def address_hash(email: str) -> str:
    """The key of a (normalised) address."""
    return hashlib.sha256(email.encode("utf-8")).hexdigest()


def remember(session: Session, workspace_id: str, contact_ids: Sequence[int], now: datetime) -> int:
    """Before these contacts are deleted: keep the state of the blacklisted and unsubscribed ones,
    forget what earlier deletions of the others' addresses left. Returns how many were kept."""
    if not contact_ids:
        return 0
    conn = session.connection()
    keep: list[dict[str, Any]] = []
    forget: list[str] = []
    found = conn.execute(
        select(_C.email, _C.lead_status, _C.lead_status_reason, _C.unsubscribed_at).where(
            _C.workspace_id == workspace_id, _C.id.in_(contact_ids), _C.email.is_not(None)
        )
    )
    for email, status, reason, unsubscribed_at in found:
        key = address_hash(email)
        if status == "blacklisted":
            keep.append(_row(workspace_id, key, "blacklisted", reason, now))
        elif unsubscribed_at is not None:
            keep.append(_row(workspace_id, key, "unsubscribed", None, unsubscribed_at))
        else:
            forget.append(key)
    if keep:
        upsert = dialect_insert(session, Suppression)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[_S.workspace_id, _S.address_hash],
                set_={name: upsert.excluded[name] for name in ("status", "reason", "since")},
            ),
            keep,
        )
    if forget:
        conn.execute(delete(Suppression).where(_S.workspace_id == workspace_id, _S.address_hash.in_(forget)))
    return len(keep)


def _row(workspace_id: str, key: str, status: str, reason: str | None, since: datetime) -> dict[str, Any]:
    return {
        "workspace_id": workspace_id,
        "address_hash": key,
        "status": status,
        "reason": reason,
        "since": since,
    }


def restore(conn: Connection, workspace_id: str, email: str, values: MutableMapping[str, Any]) -> None:
    """Give a new contact's column ``values`` the state its (normalised) address was deleted in."""
    found = conn.execute(_ONE, {"workspace_id": workspace_id, "address_hash": address_hash(email)}).first()
    if found is not None:
        _apply(found.status, found.reason, found.since, values)


def restore_many(
    conn: Connection, workspace_id: str, new: Iterable[tuple[str, MutableMapping[str, Any]]]
) -> None:
    """:func:`restore` for many new contacts, (email, values) pairs, in one query."""
    by_key = {address_hash(email): values for email, values in new}
    if not by_key:
        return
    found = conn.execute(
        select(_S.address_hash, _S.status, _S.reason, _S.since).where(
            _S.workspace_id == workspace_id, _S.address_hash.in_(by_key)
        )
    )
    for key, status, reason, since in found:
        _apply(status, reason, since, by_key[key])


def _apply(status: str, reason: str | None, since: datetime, values: MutableMapping[str, Any]) -> None:
    if status == "blacklisted":  # L1: nothing is sent to it (L2) until it is whitelisted
        values["lead_status"] = "blacklisted"
        values["lead_status_reason"] = reason
    else:  # L3: it unsubscribed from everything, and that choice stands
        values["unsubscribed_at"] = since
