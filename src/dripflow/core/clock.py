"""The clock every part of dripflow reads time from (SPEC X1).

Production injects :class:`SystemClock`; simulation injects :class:`VirtualClock`, which only moves
when the driver tells it to, so the same engine code runs under both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything that can say what time it is, in UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time, always timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """A clock that stands still until advanced; it never goes backwards."""

    def __init__(self, start: datetime) -> None:
        self._now = _require_aware(start)

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        moment = _require_aware(moment)
        if moment < self._now:
            raise ValueError(
                f"virtual clock cannot go back from {self._now.isoformat()} to {moment.isoformat()}"
            )
        self._now = moment

    def advance(self, delta: timedelta) -> None:
        self.set(self._now + delta)


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"naive datetime {moment.isoformat()} given where a UTC instant is required (SPEC T1)"
        )
    return moment.astimezone(UTC)
