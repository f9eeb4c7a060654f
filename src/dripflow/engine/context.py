"""One unit of the engine's work on one workspace: the session, the workspace's rules, the clock.

Everything the engine does goes through a :class:`Ctx`: the scheduler, event ingestion and the
operator commands build one per transaction. The journal written here is both the simulation log
(SPEC X3) and what ``explain`` tells (X5), so production and simulation record the same story.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, cast

from sqlalchemy import Executable, Table, bindparam, insert, select
from sqlalchemy.orm import Session

from dripflow.core.clock import Clock
from dripflow.core.conditions_model import ConditionNode, walk
from dripflow.core.contact_view import ContactView
from dripflow.core.model import Automation
from dripflow.core.model import Sequence as SequenceDef
from dripflow.core.model import Workspace as WorkspaceDef
from dripflow.core.steps_model import WaitUntilStep
from dripflow.core.triggers_model import TriggerNode
from dripflow.store.tables import JournalEntry, Sequence, SequenceVersion, Workspace
from dripflow.store.workspaces import current_versions, rules_key, start_rules_since

__all__ = ["KEY_FIELDS", "Ctx", "Emitted", "Rules", "load_rules"]


@dataclass(frozen=True)
class Rules:
    """The workspace file and the live definition and status of each sequence."""

    workspace: WorkspaceDef
    sequences: dict[str, SequenceDef]
    statuses: dict[str, str]
    # A4: when each automation's trigger and each sequence's start rules came into being.
    automations_since: dict[str, datetime] = field(default_factory=dict)
    starts_since: dict[str, datetime] = field(default_factory=dict)

    def existed(self, since: dict[str, datetime], name: str, moment: datetime) -> bool:
        """Whether a trigger existed at ``moment`` (A4: forward-only, even for a backdated event)."""
        began = since.get(name)
        return began is None or began <= moment

    def sequence(self, sequence_id: str) -> SequenceDef | None:
        return self.sequences.get(sequence_id)

    @cached_property
    def listened(self) -> frozenset[str]:
        """Event types some sequence's ``start_when`` or some automation's ``when`` names."""
        types = {trigger.event for sequence in self.sequences.values() for trigger in sequence.start_when}
        types.update(automation.when.event for automation in self.workspace.automations)
        return frozenset(types)

    @cached_property
    def watches_contacts(self) -> bool:
        """Whether some exclusion or condition ``stop_on`` must be checked when a contact changes."""
        return bool(self.workspace.ruleset.exclusions) or any(
            not isinstance(rule, str) for sequence in self.sequences.values() for rule in sequence.stop_on
        )

    @cached_property
    def watches_sequences(self) -> bool:
        """Whether an exclusion, stop rule or wait reads sequence progress (in_sequence and kin).

        When none does, the engine's own step and finish events change nothing a rule can see.
        """
        conditions: list[ConditionNode] = [item.if_ for item in self.workspace.ruleset.exclusions]
        for sequence in self.sequences.values():
            conditions.extend(rule for rule in sequence.stop_on if not isinstance(rule, str))
            conditions.extend(step.until for step in sequence.steps if isinstance(step, WaitUntilStep))
        return any(node.kind in _SEQUENCE_CONDITIONS for condition in conditions for node in walk(condition))

    @cached_property
    def _automation_index(self) -> dict[str, _TypeIndex]:
        grouped: dict[str, list[_Entry]] = {}
        for position, automation in enumerate(self.workspace.automations):
            entry = (position, automation, automation.when.filters())
            grouped.setdefault(automation.when.event, []).append(entry)
        return {event: _TypeIndex.of(entries) for event, entries in grouped.items()}

    def automations_for(self, event_type: str, fields: dict[str, Any]) -> list[tuple[Automation, Filters]]:
        """The automations that may fire on this event, in file order, with their trigger's filters.

        An index lookup by event type and key (the list, tag, product … the trigger names), not a
        scan of every automation (issue 4; a workspace may hold a thousand). The caller still
        tests every filter.
        """
        index = self._automation_index.get(event_type)
        return index.candidates(fields) if index is not None else []

    @cached_property
    def starters_by_event(self) -> dict[str, tuple[tuple[str, tuple[tuple[TriggerNode, Filters], ...]], ...]]:
        """Each event type's sequences in order, with those of their start rules that name it."""
        grouped: dict[str, list[tuple[str, tuple[tuple[TriggerNode, Filters], ...]]]] = {}
        for sequence_id, sequence in self.sequences.items():
            by_type: dict[str, list[tuple[TriggerNode, Filters]]] = {}
            for trigger in sequence.start_when:
                by_type.setdefault(trigger.event, []).append((trigger, trigger.filters()))
            for event, triggers in by_type.items():
                grouped.setdefault(event, []).append((sequence_id, tuple(triggers)))
        return {event: tuple(items) for event, items in grouped.items()}


Filters = dict[str, object]
_Entry = tuple[int, Automation, Filters]
# An event's main field, in this order: what its fact is filed under (§3 conditions read it) and
# what an automation's trigger is indexed by. `link` comes before `sequence`: a click carries its
# email's sequence too, and `clicked_link` must find it under the link.
KEY_FIELDS = ("list", "tag", "form", "page", "link", "sequence", "product", "video", "membership",
              "webinar", "calendar", "survey", "task")  # fmt: skip


@dataclass(frozen=True)
class _TypeIndex:
    """One event type's automations: by (key field, value) when the trigger names one, else kept
    aside to be tried on every event of the type."""

    unkeyed: tuple[_Entry, ...]
    keyed: dict[tuple[str, str], tuple[_Entry, ...]]
    key_fields: tuple[str, ...]

    @classmethod
    def of(cls, entries: list[_Entry]) -> _TypeIndex:
        unkeyed: list[_Entry] = []
        keyed: dict[tuple[str, str], list[_Entry]] = {}
        for entry in entries:
            filters = entry[2]
            name = next((key for key in KEY_FIELDS if isinstance(filters.get(key), str)), None)
            if name is None:
                unkeyed.append(entry)
            else:
                keyed.setdefault((name, str(filters[name])), []).append(entry)
        fields = tuple(key for key in KEY_FIELDS if any(name == key for name, _ in keyed))
        return cls(tuple(unkeyed), {key: tuple(items) for key, items in keyed.items()}, fields)

    def candidates(self, fields: dict[str, Any]) -> list[tuple[Automation, Filters]]:
        found = list(self.unkeyed)
        for name in self.key_fields:
            value = fields.get(name)
            if isinstance(value, str):
                found.extend(self.keyed.get((name, value), ()))
        found.sort(key=lambda entry: entry[0])
        return [(automation, filters) for _position, automation, filters in found]


_SEQUENCE_CONDITIONS = frozenset({"in_sequence", "finished_sequence", "reached_step"})


_RULES_CACHE: dict[tuple[str, str, tuple[tuple[str, int, str, str], ...]], Rules] = {}


_HEADS = (
    select(
        Workspace.definition_hash,
        Sequence.id,
        Sequence.current_version,
        Sequence.status,
        SequenceVersion.definition_hash,
    )
    .select_from(Workspace)
    .outerjoin(Sequence, Sequence.workspace_id == Workspace.id)
    .outerjoin(
        SequenceVersion,
        (SequenceVersion.workspace_id == Sequence.workspace_id)
        & (SequenceVersion.sequence_id == Sequence.id)
        & (SequenceVersion.version == Sequence.current_version),
    )
    .where(Workspace.id == bindparam("workspace_id"))
    .order_by(Sequence.id)
)


def load_rules(session: Session, workspace_id: str) -> Rules:
    """The workspace's rules, parsed once per applied version (a cache keyed by hashes and versions).

    Within one transaction they are looked up once (kept in ``session.info``); whatever changes
    them in a transaction (``apply_workspace``, live sequence edits) drops that entry.
    """
    held = session.info.get(rules_key(workspace_id))
    if isinstance(held, Rules):
        return held
    rules = _load_rules(session, workspace_id)
    session.info[rules_key(workspace_id)] = rules
    return rules


def _load_rules(session: Session, workspace_id: str) -> Rules:
    # One query: the workspace's hash and each sequence's live version, status and content hash.
    # Keyed by content, not by version numbers alone: two stores, or a rolled-back edit, can give
    # the same version number to different definitions.
    found = session.execute(_HEADS, {"workspace_id": workspace_id}).all()
    if not found:
        raise LookupError(f"no workspace {workspace_id!r}")
    heads = tuple(
        (sid, version, status, digest) for _, sid, version, status, digest in found if sid is not None
    )
    key = (workspace_id, found[0][0], heads)
    cached = _RULES_CACHE.get(key)
    if cached is not None:
        return cached
    row = session.get(Workspace, workspace_id)
    assert row is not None
    workspace = WorkspaceDef.model_validate(row.definition)
    sequences = {
        sid: SequenceDef.model_validate(version.definition)
        for sid, version in current_versions(session, workspace_id).items()
    }
    rules = Rules(
        workspace,
        sequences,
        {sid: status for sid, _version, status, _hash in heads},
        {name: datetime.fromisoformat(at) for name, at in (row.rules_since or {}).items()},
        start_rules_since(session, workspace_id),
    )
    if len(_RULES_CACHE) > 64:
        _RULES_CACHE.clear()
    _RULES_CACHE[key] = rules
    return rules


@dataclass(frozen=True)
class Emitted:
    """An event the engine itself caused (an action's effect, SPEC A1), waiting to fire triggers."""

    type: str
    contact_id: int
    fields: dict[str, Any]
    origin: str
    depth: int
    # The contact as the event left it, when its emitter knows (saves reloading it: hot path).
    view: ContactView | None = None


@dataclass
class Ctx:
    session: Session
    workspace_id: str
    rules: Rules
    clock: Clock
    pending: deque[Emitted] = field(default_factory=deque)
    fired: set[tuple[str, str, int]] = field(default_factory=set)
    # (step id, occurrence) already run, per enrollment id: loaded in bulk for a claimed batch and
    # kept current as steps run, so scheduling the next step costs no query (see enrollments.ran).
    step_runs: dict[int, set[tuple[str, str]]] = field(default_factory=dict)
    _journal: list[dict[str, Any]] = field(default_factory=list)
    # Rows whose write waits for the next read (see :meth:`defer`), per statement, in order.
    _deferred: dict[Executable, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def now(self) -> datetime:
        return self.clock.now()

    @property
    def workspace(self) -> WorkspaceDef:
        return self.rules.workspace

    def journal_mark(self) -> int:
        """Where the next record goes: pass it to :meth:`log` as ``at_mark`` to put a record there."""
        return len(self._journal)

    def log(self, kind: str, contact: ContactView | None, *, at_mark: int | None = None, **data: Any) -> None:
        """Append a journal record (SPEC X3); ``contact`` is written as its email, else its id.

        ``at_mark`` (from :meth:`journal_mark`) inserts it before the records written since, so a
        cause known only after its effects still comes first in the log.
        """
        record: dict[str, Any] = {"kind": kind}
        if contact is not None:
            record["contact"] = contact.email or str(contact.id)
        record.update({name: value for name, value in data.items() if value is not None})
        self._journal.insert(
            len(self._journal) if at_mark is None else min(at_mark, len(self._journal)),
            {
                "workspace_id": self.workspace_id,
                "at": self.now,
                "kind": kind,
                "contact_id": contact.id if contact is not None else None,
                "data": record,
            },
        )

    def defer(self, statement: Executable, row: dict[str, Any]) -> None:
        """Write ``row`` with ``statement`` later, together with the other rows it is given (one
        ``executemany`` each, hot path: a step's run and message are two rows of a batch's two).

        For INSERTs nothing in the batch reads back (step runs, outbox rows), in their order. Any
        code that reads those tables within the transaction calls :meth:`write_deferred` first:
        the scheduler's own reads (caps, frequency, earlier messages, step runs, views) and
        anything else the engine does (cascades, actions), which goes through ``drain``,
        ``refresh_view`` or :meth:`flush_journal`.
        """
        rows = self._deferred.get(statement)
        if rows is None:
            self._deferred[statement] = [row]
        else:
            rows.append(row)

    def write_deferred(self) -> None:
        """Write the rows :meth:`defer` holds, one statement per kind."""
        if not self._deferred:
            return
        deferred, self._deferred = self._deferred, {}
        connection = self.session.connection()
        for statement, rows in deferred.items():
            # One row is a plain execute: an executemany of one goes through the batching machinery.
            connection.execute(statement, rows[0] if len(rows) == 1 else rows)

    def flush_journal(self) -> None:
        """Write the buffered journal records in one multi-row INSERT, in the order they were logged
        (and the deferred rows before them)."""
        self.write_deferred()
        if self._journal:
            # Plain Core on the session's connection (hot path); its contacts are written first.
            self.session.flush()
            self.session.connection().execute(_JOURNAL_INSERT, self._journal)
            self._journal = []


_JOURNAL_INSERT = insert(cast(Table, JournalEntry.__table__))
