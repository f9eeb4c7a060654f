"""Send windows, local days and the frequency cap (SPEC T6, §6 `queued` reasons, D4, D7).

Pure functions: the current instant is always a parameter; instants in must be aware, instants out
are aware UTC. A window is judged by the wall clock: it is open whenever the clocks of its zone
show an allowed weekday, a date that is not excluded, and a time inside one of its hour ranges.
So on a fall-back night a range that covers 01:00–01:30 is open during both occurrences of that
half hour, and a range that lies wholly in a spring-forward gap is simply closed that day.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from dripflow.core.timing import as_utc, local_to_utc, parse_hhmm, wall_instants

__all__ = [
    "HoldReason",
    "Window",
    "frequency_cap_next_slot",
    "hold_reason",
    "is_open",
    "local_day_bounds",
    "next_local_midnight",
    "next_open",
    "parse_hour_range",
]

HoldReason = Literal["outside_schedule", "excluded_date"]

_MIDNIGHT = time(0, 0)
_DAY = timedelta(days=1)
_ALL_WEEKDAYS = frozenset(range(7))


@dataclass(frozen=True)
class Window:
    """A send schedule (SPEC §2 `schedules:`, T6), with its zone already resolved by the caller.

    `days` uses 0 = Monday … 6 = Sunday and must not be empty. `hours` are (start, end) wall-time
    ranges, start inclusive and end exclusive; an end of 00:00 means midnight at the end of the
    day, so (00:00, 00:00) is the whole day. No ranges at all also means the whole day. A range
    may not cross midnight: write 22:00-00:00 and 00:00-02:00 instead. `excluded_dates` are
    closed all day.
    """

    zone: ZoneInfo
    days: frozenset[int]
    hours: tuple[tuple[time, time], ...] = ()
    excluded_dates: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.zone, ZoneInfo):
            raise ValueError(f"window zone must be a zoneinfo.ZoneInfo, got {self.zone!r}")
        if not self.days:
            raise ValueError("a send schedule needs at least one day; with no days it would never open")
        stray = sorted(day for day in self.days if day not in _ALL_WEEKDAYS)
        if stray:
            raise ValueError(f"schedule days {stray} are not weekdays; use 0 (Monday) to 6 (Sunday)")
        for start, end in self.hours:
            _check_range(start, end)


def parse_hour_range(text: str) -> tuple[time, time]:
    """Parse "09:00-12:00" into (start, end); "24:00" or "00:00" as the end means midnight."""
    start_text, dash, end_text = text.partition("-")
    if not dash:
        raise ValueError(f"cannot read hours {text!r}; write a range such as '09:00-17:00'")
    start = parse_hhmm(start_text)
    end = _MIDNIGHT if end_text.strip() == "24:00" else parse_hhmm(end_text)
    _check_range(start, end)
    return start, end


def _check_range(start: time, end: time) -> None:
    for value in (start, end):
        if not isinstance(value, time) or value.tzinfo is not None:
            raise ValueError(f"schedule hours must be wall times without tzinfo, got {value!r}")
    if end != _MIDNIGHT and end <= start:
        raise ValueError(
            f"hours {start.isoformat('minutes')}-{end.isoformat('minutes')} end before they start; "
            "a range cannot cross midnight, split it into two (such as 22:00-00:00 and 00:00-02:00)"
        )


# --------------------------------------------------------------------------------------------------
# Is the window open? (T6, §6)


def is_open(window: Window, moment: datetime) -> bool:
    """True when the wall clock of the window's zone is inside the window at `moment` (T6)."""
    return hold_reason(window, moment) is None


def hold_reason(window: Window, moment: datetime) -> HoldReason | None:
    """Why a due email or SMS is held at `moment`, or None when the window is open (T6, §6).

    `excluded_date` is reported only when the exclusion is what closes the window: an excluded
    Saturday on a weekdays-only schedule, or 20:00 on an excluded date with 09:00-17:00 hours, is
    `outside_schedule`.
    """
    local = as_utc(moment).astimezone(window.zone)
    if local.weekday() not in window.days or not _in_hours(window, local.time()):
        return "outside_schedule"
    if local.date() in window.excluded_dates:
        return "excluded_date"
    return None


def _in_hours(window: Window, wall_time: time) -> bool:
    if not window.hours:
        return True
    return any(start <= wall_time and (end == _MIDNIGHT or wall_time < end) for start, end in window.hours)


def next_open(window: Window, moment: datetime) -> datetime:
    """The first instant at or after `moment` inside the window; `moment` itself if open (T6).

    The window can only open where the wall clock reaches a range start, or where a DST
    transition makes the clock jump into a range (a range starting in a spring-forward gap opens
    at the end of the gap, T2). Those candidates are tried day by day, for as many weeks as there
    are excluded dates plus three (each excluded date can cost a week when one weekday is allowed,
    and a DST gap can swallow a day's ranges). A valid Window always opens within that; if it
    does not, ValueError.
    """
    moment = as_utc(moment)
    if is_open(window, moment):
        return moment
    first_day = moment.astimezone(window.zone).date() - _DAY
    best: datetime | None = None
    days_after_best = 0
    for offset in range(7 * (len(window.excluded_dates) + 3)):
        day = first_day + timedelta(days=offset)
        for candidate in _entry_candidates(window, day):
            if candidate > moment and (best is None or candidate < best) and is_open(window, candidate):
                best = candidate
        if best is not None:
            # Wall time is not monotonic across DST: let the next days offer an earlier instant.
            days_after_best += 1
            if days_after_best > 2:
                return best
    if best is not None:
        return best
    raise ValueError(
        f"send schedule never opens after {moment.isoformat()} "
        f"(days {sorted(window.days)}, {len(window.excluded_dates)} excluded dates)"
    )


def _entry_candidates(window: Window, day: date) -> Iterator[datetime]:
    """Instants of `day` at which the window may go from closed to open."""
    zone = window.zone
    starts = [start for start, _ in window.hours] or [_MIDNIGHT]
    if day.weekday() in window.days and day not in window.excluded_dates:
        for start in starts:
            yield from wall_instants(day, start, zone)
            yield local_to_utc(day, start, zone)  # a start inside a gap opens when the gap ends (T2)
    yield from _transitions(
        zone, local_to_utc(day, _MIDNIGHT, zone), local_to_utc(day + _DAY, _MIDNIGHT, zone)
    )


def _transitions(zone: ZoneInfo, low: datetime, high: datetime) -> Iterator[datetime]:
    """The UTC instants in (low, high] at which `zone` changes its offset, to the second.

    Assumes a zone never changes offset and changes it back within one span (one local day).
    """
    while high > low and _offset(zone, low) != _offset(zone, high):
        before = _offset(zone, low)
        lo_s, hi_s = 0, int((high - low).total_seconds())
        while hi_s - lo_s > 1:
            mid = (lo_s + hi_s) // 2
            if _offset(zone, low + timedelta(seconds=mid)) == before:
                lo_s = mid
            else:
                hi_s = mid
        low = low + timedelta(seconds=hi_s)
        yield low


def _offset(zone: ZoneInfo, moment: datetime) -> timedelta | None:
    return moment.astimezone(zone).utcoffset()


# --------------------------------------------------------------------------------------------------
# Local days, for daily caps (D4)


def local_day_bounds(moment: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC start (inclusive) and end (exclusive) of the local day containing `moment` (D4).

    A day starts at its first 00:00, or where its clock starts if midnight falls in a DST gap
    (T2), so a day can last 23, 24 or 25 hours.
    """
    day = as_utc(moment).astimezone(zone).date()
    return local_to_utc(day, _MIDNIGHT, zone), local_to_utc(day + _DAY, _MIDNIGHT, zone)


def next_local_midnight(moment: datetime, zone: ZoneInfo) -> datetime:
    """When the next local day begins: where a mailbox at its daily cap resumes (D4)."""
    return local_day_bounds(moment, zone)[1]


# --------------------------------------------------------------------------------------------------
# Frequency cap (D7)


def frequency_cap_next_slot(
    sent_times: Sequence[datetime], limit: int, per: timedelta, moment: datetime
) -> datetime:
    """The earliest instant at or after `moment` at which one more message keeps the contact at no
    more than `limit` (`ruleset.frequency.max`) in any rolling `per` (D7).

    A rolling window is half-open: with limit 1 per 7 d, a message sent at Monday 09:00 allows the
    next at the following Monday 09:00 exactly. `sent_times` are messages already sent, none later
    than `moment`.
    """
    moment = as_utc(moment)
    if limit < 1:
        raise ValueError(f"frequency cap max must be at least 1, got {limit}")
    if per <= timedelta(0):
        raise ValueError(f"frequency cap period must be positive, got {per}")
    sent = sorted(as_utc(sent_at, "sent time") for sent_at in sent_times)
    if sent and sent[-1] > moment:
        raise ValueError(f"sent time {sent[-1].isoformat()} is later than moment {moment.isoformat()}")
    recent = sent[bisect.bisect_right(sent, moment - per) :]
    if len(recent) < limit:
        return moment
    return recent[len(recent) - limit] + per
