"""API keys (SPEC §10): created with a role, shown once, stored as a hash, checked in constant time.

A key reads ``df_<prefix>_<secret>``: the prefix finds the row, the secret (32 random bytes) is
compared by its SHA-256. A slow password hash buys nothing for a random 256-bit secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from dripflow.store.tables import ApiKey

__all__ = ["ROLES", "Credential", "Role", "check_key", "create_key"]

Role = Literal["read", "write", "admin"]
ROLES: tuple[Role, ...] = ("read", "write", "admin")


@dataclass(frozen=True)
class Credential:
    workspace_id: str
    role: Role
    prefix: str

    def allows(self, needed: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(needed)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    session: Session, workspace_id: str, role: Role, now: datetime, label: str | None = None
) -> str:
    """Store a new key and return it in full; it cannot be shown again."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    session.add(
        ApiKey(
            prefix=prefix,
            workspace_id=workspace_id,
            secret_hash=_digest(secret),
            role=role,
            label=label,
            created_at=now,
        )
    )
    session.flush()
    return f"df_{prefix}_{secret}"


def check_key(session: Session, presented: str) -> Credential | None:
    """The credential a presented key stands for, or None (unknown, malformed or revoked)."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "df":
        return None
    row = session.get(ApiKey, parts[1])
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_hash, _digest(parts[2])):
        return None
    role = row.role if row.role in ROLES else "read"
    return Credential(row.workspace_id, role, row.prefix)
