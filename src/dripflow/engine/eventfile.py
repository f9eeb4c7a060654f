"""Reading X2 event files (one JSON object a line) for `simulate` and `events ingest`.

Every line is checked before anything is applied, and every problem is reported with its
FILE:LINE, so a user fixes a file in one round rather than one error per run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dripflow.core.errors import UserError

__all__ = ["MAX_REPORTED", "InputEvent", "format_at", "parse_at", "read_events"]

MAX_REPORTED = 20


def parse_at(text: object, where: str) -> datetime:
    if not isinstance(text, str):
        raise UserError(f"{where}: `at` must be an ISO time such as 2026-11-22T13:37:00Z")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{where}: `at` {text!r} is not an ISO time such as 2026-11-22T13:37:00Z") from None
    if moment.tzinfo is None:
        raise UserError(f"{where}: `at` {text!r} has no time zone; end it with Z for UTC")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise UserError(f"{where}: `at` {text!r} is out of range") from None


def format_at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class InputEvent:
    line: int
    at: datetime
    data: dict[str, Any]


def read_events(
    path: Path,
    *,
    default_at: datetime | None = None,
    ordered: bool = True,
    latest: datetime | None = None,
    bad_lines: list[str] | None = None,
) -> list[InputEvent]:
    """The events of ``path``; raises one UserError listing every bad line.

    ``default_at`` is the time of an event without ``at`` (none: ``at`` is required, as in
    simulate); ``ordered`` requires time order; ``latest`` refuses events after it (an ingested
    event cannot come from the future). With ``bad_lines``, bad lines are collected there (as
    ``FILE:LINE: problem``) instead, and the good ones returned.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    events: list[InputEvent] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(_event(path, number, line, default_at, latest, events if ordered else None))
        except UserError as exc:
            problems.append(str(exc))
    if bad_lines is not None:
        bad_lines.extend(problems)
        return events
    if problems:
        shown = problems[:MAX_REPORTED]
        if len(problems) > MAX_REPORTED:
            shown.append(f"… and {len(problems) - MAX_REPORTED} more bad lines")
        raise UserError("\n".join(shown))
    return events


def _event(
    path: Path,
    number: int,
    line: str,
    default_at: datetime | None,
    latest: datetime | None,
    before: list[InputEvent] | None,
) -> InputEvent:
    where = f"{path}:{number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: not a JSON object: {exc.msg}") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: each line must be a JSON object")
    if not isinstance(data.get("type"), str):
        raise UserError(f'{where}: the event has no `type` (such as "list.subscribed")')
    at = default_at if "at" not in data and default_at is not None else parse_at(data.get("at"), where)
    if latest is not None and at > latest:
        raise UserError(f"{where}: `at` {format_at(at)} is in the future (now is {format_at(latest)})")
    if before and at < before[-1].at:
        raise UserError(f"{where}: events must be in time order ({format_at(at)} is before the line above)")
    return InputEvent(number, at, data)
