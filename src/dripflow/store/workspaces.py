"""Applying a workspace file to the database (SPEC §2, §10 `apply`).

Applying is idempotent: the stored document and each sequence carry a hash of their canonical JSON,
so an unchanged file writes nothing. A changed sequence gets a new version; earlier versions are kept
forever, so enrollments and reports can always say which definition they ran under. A sequence that
disappears from the file is archived, never deleted: contacts' history with it stays readable.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dripflow.core.fieldvalues import FieldType
from dripflow.store.events import AuditLog
from dripflow.store.tables import Sequence, SequenceVersion, Workspace


def definition_hash(document: Any) -> str:
    """A stable fingerprint of a JSON-ready document: key order and spacing do not matter."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class ApplyReport:
    """What `apply` changed, in words for the person who ran it."""

    workspace_id: str
    workspace_created: bool = False
    workspace_changed: bool = False
    sequences_created: list[str] = field(default_factory=list)
    sequences_versioned: list[tuple[str, int]] = field(default_factory=list)
    sequences_archived: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.workspace_created
            or self.workspace_changed
            or self.sequences_created
            or self.sequences_versioned
            or self.sequences_archived
        )

    def lines(self) -> list[str]:
        if not self.changed:
            return [f"workspace {self.workspace_id!r}: unchanged"]
        verb = "created" if self.workspace_created else "updated"
        lines = [f"workspace {self.workspace_id!r}: {verb}"]
        lines += [f"  sequence {sid!r}: created (version 1)" for sid in self.sequences_created]
        lines += [
            f"  sequence {sid!r}: new version {v} (earlier kept)" for sid, v in self.sequences_versioned
        ]
        lines += [f"  sequence {sid!r}: archived (no longer in the file)" for sid in self.sequences_archived]
        return lines


def rules_key(workspace_id: str) -> str:
    """Where a transaction keeps the workspace's parsed rules (``session.info``); see load_rules."""
    return f"dripflow.rules:{workspace_id}"


def apply_workspace(session: Session, model: BaseModel, *, now: datetime, actor: str) -> ApplyReport:
    """Create or update the workspace described by a validated model, inside the caller's transaction."""
    document = model.model_dump(mode="json")
    settings = document["workspace"]
    workspace_id = str(settings["id"])
    session.info.pop(rules_key(workspace_id), None)
    report = ApplyReport(workspace_id)
    audit = AuditLog(session, workspace_id)
    digest = definition_hash(document)
    row = session.get(Workspace, workspace_id)
    if row is None:
        row = Workspace(
            id=workspace_id,
            name=settings["name"],
            timezone=settings["timezone"],
            definition=document,
            definition_hash=digest,
            created_at=now,
            updated_at=now,
            rules_since=automations_since(None, None, document, now),
        )
        session.add(row)
        session.flush()
        report.workspace_created = True
        audit.record(actor, "workspace.created", workspace_id, {"hash": digest}, now)
    elif row.definition_hash != digest:
        row.name = settings["name"]
        row.timezone = settings["timezone"]
        row.rules_since = automations_since(row.definition, row.rules_since, document, now)
        row.definition = document
        row.definition_hash = digest
        row.updated_at = now
        report.workspace_changed = True
        audit.record(actor, "workspace.updated", workspace_id, {"hash": digest}, now)
    _apply_sequences(session, workspace_id, document.get("sequences") or [], now, actor, report)
    return report


def automations_since(
    before: dict[str, Any] | None, since: dict[str, str] | None, after: dict[str, Any], now: datetime
) -> dict[str, str]:
    """When each automation's trigger came into being (A4): kept from before for an automation
    whose `when` is unchanged, ``now`` for a new one or a new trigger. Changing what an automation
    does (`if`, `then`) is not a new trigger."""
    old = {str(item["id"]): item.get("when") for item in (before or {}).get("automations") or []}
    known = since or {}
    result: dict[str, str] = {}
    for item in after.get("automations") or []:
        automation_id = str(item["id"])
        unchanged = automation_id in old and old[automation_id] == item.get("when")
        result[automation_id] = known.get(automation_id, "") if unchanged else now.isoformat()
    return {key: value for key, value in result.items() if value}


def start_rules_since(session: Session, workspace_id: str) -> dict[str, datetime]:
    """When each sequence's current start rules came into being (A4): the oldest version, going back
    from the live one, whose `start_when` is the same."""
    rows = session.execute(
        select(SequenceVersion.sequence_id, SequenceVersion.version, SequenceVersion.definition,
               SequenceVersion.created_at, Sequence.current_version)
        .join(Sequence, (Sequence.workspace_id == SequenceVersion.workspace_id)
              & (Sequence.id == SequenceVersion.sequence_id))
        .where(SequenceVersion.workspace_id == workspace_id,
               SequenceVersion.version <= Sequence.current_version)
        .order_by(SequenceVersion.sequence_id, SequenceVersion.version.desc())
    ).all()  # fmt: skip
    since: dict[str, datetime] = {}
    live: dict[str, Any] = {}
    done: set[str] = set()
    for sequence_id, version, definition, created_at, current in rows:
        rules = (definition or {}).get("start_when")
        if version == current:
            live[sequence_id], since[sequence_id] = rules, created_at
        elif sequence_id not in done and rules == live.get(sequence_id):
            since[sequence_id] = created_at
        else:
            done.add(sequence_id)
    return since


def _apply_sequences(
    session: Session,
    workspace_id: str,
    definitions: list[dict[str, Any]],
    now: datetime,
    actor: str,
    report: ApplyReport,
) -> None:
    audit = AuditLog(session, workspace_id)
    existing = {
        seq.id: seq for seq in session.scalars(select(Sequence).where(Sequence.workspace_id == workspace_id))
    }
    latest_hash = {
        sid: version.definition_hash for sid, version in current_versions(session, workspace_id).items()
    }
    seen: set[str] = set()
    for definition in definitions:
        sequence_id = str(definition["id"])
        seen.add(sequence_id)
        digest = definition_hash(definition)
        status = str(definition.get("status", "active"))
        current = existing.get(sequence_id)
        if current is None:
            session.add(
                Sequence(
                    workspace_id=workspace_id,
                    id=sequence_id,
                    status=status,
                    current_version=1,
                    updated_at=now,
                )
            )
            session.flush()
            _add_version(session, workspace_id, sequence_id, 1, definition, digest, now)
            report.sequences_created.append(sequence_id)
            audit.record(actor, "sequence.created", sequence_id, {"version": 1}, now)
        elif latest_hash.get(sequence_id) != digest or current.status != status:
            version = current.current_version + 1
            _add_version(session, workspace_id, sequence_id, version, definition, digest, now)
            current.current_version = version
            current.status = status
            current.updated_at = now
            report.sequences_versioned.append((sequence_id, version))
            audit.record(actor, "sequence.versioned", sequence_id, {"version": version}, now)
    for sequence_id, current in sorted(existing.items()):
        if sequence_id not in seen and current.status != "archived":
            current.status = "archived"
            current.updated_at = now
            report.sequences_archived.append(sequence_id)
            audit.record(actor, "sequence.archived", sequence_id, {"reason": "removed from the file"}, now)


def _add_version(
    session: Session,
    workspace_id: str,
    sequence_id: str,
    version: int,
    definition: dict[str, Any],
    digest: str,
    now: datetime,
) -> None:
    session.add(
        SequenceVersion(
            workspace_id=workspace_id,
            sequence_id=sequence_id,
            version=version,
            definition=definition,
            definition_hash=digest,
            created_at=now,
        )
    )


def current_versions(session: Session, workspace_id: str) -> dict[str, SequenceVersion]:
    """The live version of each of the workspace's sequences, by sequence id."""
    rows = session.scalars(
        select(SequenceVersion)
        .join(
            Sequence,
            (Sequence.workspace_id == SequenceVersion.workspace_id)
            & (Sequence.id == SequenceVersion.sequence_id)
            & (Sequence.current_version == SequenceVersion.version),
        )
        .where(SequenceVersion.workspace_id == workspace_id)
    )
    return {row.sequence_id: row for row in rows}


def sequence_versions(session: Session, workspace_id: str, sequence_id: str) -> list[SequenceVersion]:
    """Every stored version of a sequence, oldest first."""
    return list(
        session.scalars(
            select(SequenceVersion)
            .where(SequenceVersion.workspace_id == workspace_id, SequenceVersion.sequence_id == sequence_id)
            .order_by(SequenceVersion.version)
        )
    )


def workspace_document(session: Session, workspace_id: str) -> dict[str, Any]:
    """The last applied workspace document, as JSON data."""
    row = session.get(Workspace, workspace_id)
    if row is None:
        raise LookupError(f"no workspace {workspace_id!r}")
    return row.definition


def declared_fields(session: Session, workspace_id: str) -> dict[str, FieldType]:
    """The workspace's custom fields and their types, in declaration order."""
    fields = workspace_document(session, workspace_id).get("fields") or []
    return {str(item["key"]): cast(FieldType, item["type"]) for item in fields}


def declared_lists(session: Session, workspace_id: str) -> list[str]:
    return [str(name) for name in workspace_document(session, workspace_id).get("lists") or []]


def count_sequences(session: Session, workspace_id: str) -> int:
    return int(session.scalar(select(func.count()).where(Sequence.workspace_id == workspace_id)) or 0)
