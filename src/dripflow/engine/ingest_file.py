"""`dripflow events ingest FILE.jsonl`: a file of X2 events, each applied whole or not at all.

The whole file is one transaction and each event runs in its own savepoint: an event that cannot
be applied is rolled back alone (nothing of it is half-applied) and the rest of the file goes on.
By default the good events are kept and the refused ones reported with their FILE:LINE (issue 4:
"the other lines are still applied and the command says how many failed"); ``atomic`` rolls the
whole file back if any event is refused. An event with an ``id`` is applied at most once (D3), so
a file can be ingested again after a crash or by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from dripflow.core.clock import VirtualClock
from dripflow.core.errors import UserError
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.eventfile import MAX_REPORTED, InputEvent
from dripflow.engine.ingest import IngestError, ingest
from dripflow.store.database import transaction
from dripflow.store.workspaces import rules_key

__all__ = ["EventsRefused", "IngestReport", "ingest_events"]


class EventsRefused(UserError):
    """Some events could not be applied, so none were; ``problems`` pairs each line with why."""

    def __init__(self, message: str, problems: list[tuple[int, str]]) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True)
class IngestReport:
    applied: int
    duplicates: int
    refused: tuple[str, ...] = ()  # ``FILE:LINE: problem`` of each event refused (not atomic)


def ingest_events(
    engine: Engine, workspace_id: str, events: list[InputEvent], source: Path, *, atomic: bool = True
) -> IngestReport:
    """Apply ``events`` (each at its own ``at``). ``atomic``: if any is refused, none is applied and
    a UserError names every one refused; otherwise the others are applied and the report names
    the refused ones."""
    applied = duplicates = 0
    problems: list[tuple[int, str]] = []
    with transaction(engine) as session:
        for item in events:
            clock = VirtualClock(item.at)
            try:
                with session.begin_nested():
                    ctx = Ctx(session, workspace_id, load_rules(session, workspace_id), clock)
                    outcome = ingest(ctx, item.data)
            except IngestError as exc:
                session.info.pop(rules_key(workspace_id), None)  # it may hold a rolled-back edit
                problems.append((item.line, str(exc)))
                continue
            if outcome.applied:
                applied += 1
            else:
                duplicates += 1
        if problems and not atomic:
            refused = tuple(f"{source}:{line}: {text}" for line, text in problems)
            return IngestReport(applied, duplicates, refused)
        if problems:  # raising inside the transaction rolls all of it back
            shown = [f"{source}:{line}: {text}" for line, text in problems[:MAX_REPORTED]]
            if len(problems) > MAX_REPORTED:
                shown.append(f"… and {len(problems) - MAX_REPORTED} more events refused")
            shown.append(
                f"nothing was applied: fix the {len(problems)} event(s) above and ingest the file again"
            )
            raise EventsRefused("\n".join(shown), problems)
    return IngestReport(applied, duplicates)
