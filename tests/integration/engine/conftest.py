"""A fixture that runs the real engine (``dripflow.simulate``) on the test's database.

``run_sim`` takes a workspace as YAML text, X2 events as dicts and an ``until``; it runs the same
ingestion, automation and scheduler code as ``dripflow simulate`` and ``dripflow worker``, on the
parametrised ``db_url`` (SQLite and PostgreSQL), and returns the X3 log as a ``Log``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dripflow.core.validate import load_workspace_text
from dripflow.simulate import InputEvent, SimulationResult, final_state, parse_at, simulate


@dataclass
class Log:
    """The X3 log of one run, with the lookups the tests need."""

    records: list[dict[str, Any]]
    result: SimulationResult

    def of(self, kind: str, **match: object) -> list[dict[str, Any]]:
        return [
            record
            for record in self.records
            if record["kind"] == kind and all(record.get(key) == value for key, value in match.items())
        ]

    def sent(self, **match: object) -> list[dict[str, Any]]:
        return self.of("message.sent", **match)

    def statuses(self, contact: str, sequence: str) -> list[tuple[str, str | None]]:
        return [
            (record["status"], record.get("reason"))
            for record in self.of("enrollment.status", contact=contact, sequence=sequence)
        ]

    def state(self) -> dict[str, Any]:
        return final_state(self.result)

    def enrollment(self, contact: str, sequence: str) -> dict[str, Any]:
        for entry in self.state()["contacts"]:
            if entry["contact"] == contact:
                found = [e for e in entry["enrollments"] if e["sequence"] == sequence]
                assert len(found) == 1, found
                return dict(found[0])
        raise AssertionError(f"no contact {contact}")

    def dump(self) -> str:
        return "\n".join(json.dumps(record) for record in self.records)


RunSim = Callable[..., Log]


@pytest.fixture
def run_sim(db_url: str) -> Iterator[RunSim]:
    results: list[SimulationResult] = []

    def run(workspace_yaml: str, events: list[dict[str, Any]], until: str, start: str | None = None) -> Log:
        assert not results, "run_sim runs once per test: the database is the test's"
        workspace = load_workspace_text(workspace_yaml, "workspace.yaml")
        items = [InputEvent(n, parse_at(e["at"], f"events:{n}"), e) for n, e in enumerate(events, 1)]
        result = simulate(
            workspace,
            items,
            parse_at(until, "until"),
            start=parse_at(start, "start") if start else None,
            events_path=Path("events.jsonl"),
            database_url=db_url,
        )
        results.append(result)
        return Log(result.log, result)

    yield run
    for result in results:
        result.engine.dispose()
