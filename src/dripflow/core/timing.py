"""When a sequence step is due: the pure timing core (SPEC §4, T1–T9, and S5).

Nothing here reads a clock, a database or a file: the current instant is always a parameter, so the
same answers come out in production and in simulation (SPEC X1). Every instant going in must be
timezone-aware; every instant coming out is aware UTC (SPEC T1). Wall-clock values (`at`,
`default_send_time`, dates) are read in the zone of the :class:`TimingContext`.

dripflow works in whole minutes, as Kartra and ONTRAPORT do: a wall time such as 07:00 counts as
"not yet past" until its minute is over, so a contact who arrives at 07:00:40 for a step set to
07:00 gets it at once rather than tomorrow (see :func:`_minute_is_over`). The user-facing account
of every rule and decision is docs/timing.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo

__all__ = [
    "Delay",
    "ResumeMode",
    "StepTiming",
    "TimingContext",
    "anniversary",
    "appended_step_due",
    "as_utc",
    "calendar_order",
    "date_step_due",
    "field_date_step_due",
    "local_date",
    "local_to_utc",
    "missed_window",
    "next_annual_due",
    "parse_duration",
    "parse_hhmm",
    "resume_due",
    "step_due",
    "wall_instants",
]

ResumeMode = Literal["continue", "restart"]

_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)
_ALL_WEEKDAYS = frozenset(range(7))
_SLOT_SIZES = frozenset({0, 30})
# How far to look for a calendar date with a usable wall time; only a zone that skips days
# (Pacific/Apia skipped 2011-12-30) ever needs more than one extra day.
_MAX_DAY_SEARCH = 14

K = TypeVar("K")


# --------------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class Delay:
    """A step's `after:` value (SPEC §2): a non-negative wait in days, hours and minutes."""

    days: int = 0
    hours: int = 0
    minutes: int = 0

    def __post_init__(self) -> None:
        for name in ("days", "hours", "minutes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"after.{name} must be a whole number, got {value!r}")
            if value < 0:
                raise ValueError(f"after.{name} must not be negative, got {value}")

    @property
    def is_zero(self) -> bool:
        """`after: 0` (or no `after`): the step fires at once (SPEC T4)."""
        return self.days == 0 and self.hours == 0 and self.minutes == 0

    @property
    def has_clock_part(self) -> bool:
        """Hours or minutes given: the delay is an exact length of time (SPEC T4)."""
        return self.hours > 0 or self.minutes > 0

    def as_timedelta(self) -> timedelta:
        """The delay as elapsed time, days counted as 24 h (SPEC T4)."""
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes)


@dataclass(frozen=True)
class StepTiming:
    """The timing fields of one step: `after`, `at` and `days` (SPEC §2, T3–T6).

    `weekdays` uses Python's numbering (0 = Monday … 6 = Sunday); None means every day.
    """

    after: Delay = field(default_factory=Delay)
    at: time | None = None
    weekdays: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if self.at is not None:
            _require_wall_time(self.at, "at")
        if self.weekdays is not None:
            _require_weekdays(self.weekdays, "days")


@dataclass(frozen=True)
class TimingContext:
    """Workspace settings a due time depends on (SPEC §2 `workspace:`, T1, T4, T5, T8).

    `zone` is the zone `at` times and dates are read in: the sequence's `timezone`, already
    resolved by the caller (`contact` → the contact's zone, else the workspace's).
    """

    zone: ZoneInfo
    default_send_time: time = time(10, 0)
    step_slots: int = 0
    date_step_grace: timedelta = timedelta(hours=2)

    def __post_init__(self) -> None:
        if not isinstance(self.zone, ZoneInfo):
            raise ValueError(f"zone must be a zoneinfo.ZoneInfo, got {self.zone!r}")
        _require_wall_time(self.default_send_time, "default_send_time")
        if self.step_slots not in _SLOT_SIZES:
            raise ValueError(f"step_slots must be 0 or 30, got {self.step_slots!r}")
        if self.date_step_grace < timedelta(0):
            raise ValueError(f"date_step_grace must not be negative, got {self.date_step_grace}")


# --------------------------------------------------------------------------------------------------
# Instants and wall times (T1, T2)


def as_utc(moment: datetime, name: str = "moment") -> datetime:
    """Return `moment` in UTC; a naive datetime is a bug, not a guess (SPEC T1)."""
    if not isinstance(moment, datetime):
        raise ValueError(f"{name} must be a datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} is a naive datetime ({moment.isoformat()}); pass a timezone-aware instant")
    return moment.astimezone(UTC)


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The calendar date on the wall clock of `zone` at `moment` (SPEC T1)."""
    return as_utc(moment).astimezone(zone).date()


def local_to_utc(day: date, t: time, zone: ZoneInfo) -> datetime:
    """The UTC instant at which the clocks of `zone` show `day` `t` (SPEC T2).

    A wall time skipped by a spring-forward gap fires at the first valid minute after it (02:30 on
    2026-03-08 in New York → 03:00 EDT); an ambiguous one in a fall-back overlap fires once, at its
    first occurrence (01:30 on 2026-11-01 in New York → 01:30 EDT, not EST).
    """
    _require_wall_time(t, "time")
    wall = datetime.combine(day, t)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(first, zone) == wall:
        return first
    return _ceil_local_minute(_gap_end(wall, zone), zone)


def wall_instants(day: date, t: time, zone: ZoneInfo) -> tuple[datetime, ...]:
    """Every instant at which `zone` shows `day` `t`: none in a gap, two in an overlap."""
    wall = datetime.combine(day, t)
    found: list[datetime] = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if _wall(instant, zone) == wall and instant not in found:
            found.append(instant)
    return tuple(found)


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock reading of `zone` at `moment`."""
    return moment.astimezone(zone).replace(tzinfo=None, fold=0)


def _gap_end(wall: datetime, zone: ZoneInfo) -> datetime:
    """The transition instant that skipped the non-existent wall time `wall`.

    PEP 495: in a gap, fold=1 maps with the offset after the transition and fold=0 with the one
    before, so the transition lies in (fold-1 instant, fold-0 instant]; bisect for it in seconds.
    """
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    before = low.astimezone(zone).utcoffset()
    lo_s, hi_s = 0, int((high - low).total_seconds())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if (low + timedelta(seconds=mid)).astimezone(zone).utcoffset() == before:
            lo_s = mid
        else:
            hi_s = mid
    return low + timedelta(seconds=hi_s)


def _floor_local_minute(moment: datetime, zone: ZoneInfo) -> datetime:
    """The start of the wall-clock minute `moment` falls in."""
    local = moment.astimezone(zone)
    return moment - timedelta(seconds=local.second, microseconds=local.microsecond)


def _ceil_local_minute(moment: datetime, zone: ZoneInfo) -> datetime:
    """`moment` if it starts a wall-clock minute, else the start of the next one."""
    floor = _floor_local_minute(moment, zone)
    return moment if floor == moment else floor + _MINUTE


def _minute_is_over(wall_instant: datetime, reference: datetime, zone: ZoneInfo) -> bool:
    """True when the wall-clock minute of `wall_instant` ended at or before `reference`.

    This is dripflow's meaning of "already past" for wall times (T3, T9): 07:00 is past at 07:01:00
    but not at 07:00:40.
    """
    return _floor_local_minute(wall_instant, zone) + _MINUTE <= reference


def _next_wall_time(start_day: date, t: time, zone: ZoneInfo, not_before: datetime) -> datetime:
    """The first `t` on `start_day` or later whose minute is not over at `not_before`.

    Inside that minute the answer is `not_before` itself: the step fires at once.
    """
    for offset in range(_MAX_DAY_SEARCH):
        candidate = local_to_utc(start_day + timedelta(days=offset), t, zone)
        if not _minute_is_over(candidate, not_before, zone):
            return max(candidate, not_before)
    raise ValueError(f"no {t.isoformat('minutes')} in {zone.key} within {_MAX_DAY_SEARCH} days")


# --------------------------------------------------------------------------------------------------
# Step sequences (T3–T6)


def step_due(timing: StepTiming, ctx: TimingContext, base: datetime) -> datetime:
    """When a step is due, timed from `base`: enrollment for the first step, else the moment the
    previous step fired (SPEC T3).

    - `after` 0 and no `at` → `base` (T4).
    - whole days, no `at` → `default_send_time` on the local date D days after base's (T4).
    - days (or 0) with `at` → HH:MM on the local date D days after base's; if that minute is already
      over at `base`, the next day's HH:MM (T3). Within the minute, `base` itself.
    - hours or minutes → exactly `base` + delay, days counting 24 h (T4); with `step_slots: 30` the
      first wall-clock :00 or :30 at or after the due minute (T5, seconds ignored: 15:00:20 is in
      minute 15:00 and fires 15:00:00).
    - hours or minutes *and* `at` (ONTRAPORT offers one or the other) → wait at least the delay,
      then the next HH:MM: "not before 4 hours from now, at 09:00". Slots do not apply.

    Finally `days:` moves a due time on a disallowed local weekday to the next allowed day at the
    same local time (T6, T2 applying on the new day).
    """
    base = as_utc(base, "base")
    return _on_allowed_weekday(_due_before_weekdays(timing, ctx, base), timing.weekdays, ctx.zone)


def _due_before_weekdays(timing: StepTiming, ctx: TimingContext, base: datetime) -> datetime:
    """T3/T4/T5 without the weekday rule."""
    after = timing.after
    if after.has_clock_part:
        exact = base + after.as_timedelta()
        if timing.at is not None:
            return _next_wall_time(local_date(exact, ctx.zone), timing.at, ctx.zone, exact)
        return _to_slot(exact, ctx) if ctx.step_slots else exact
    if timing.at is not None:
        start = local_date(base, ctx.zone) + timedelta(days=after.days)
        return _next_wall_time(start, timing.at, ctx.zone, base)
    if after.is_zero:
        return base
    start = local_date(base, ctx.zone) + timedelta(days=after.days)
    return _next_wall_time(start, ctx.default_send_time, ctx.zone, base)


def _to_slot(exact: datetime, ctx: TimingContext) -> datetime:
    """The first instant at or after the due minute whose wall clock shows :00 or :30 (T5).

    Slots are wall-clock minutes in the zone, so in Asia/Kathmandu (+05:45) they fall at :15 and
    :45 UTC. Walking minute by minute keeps DST jumps (Lord Howe's 30-minute one included) exact.
    """
    candidate = _floor_local_minute(exact, ctx.zone)
    for _ in range(24 * 60):
        if candidate.astimezone(ctx.zone).minute % ctx.step_slots == 0:
            return candidate
        candidate += _MINUTE
    raise ValueError(f"no :00/:30 slot found in {ctx.zone.key} after {exact.isoformat()}")


def _on_allowed_weekday(due: datetime, weekdays: frozenset[int] | None, zone: ZoneInfo) -> datetime:
    """Move `due` to the next allowed local weekday, same wall time (T6; T2 on the new day)."""
    if weekdays is None or weekdays == _ALL_WEEKDAYS:
        return due
    local = due.astimezone(zone)
    if local.weekday() in weekdays:
        return due
    wall_time = local.time().replace(tzinfo=None, fold=0)
    for offset in range(1, _MAX_DAY_SEARCH + 1):
        candidate = local_to_utc(local.date() + timedelta(days=offset), wall_time, zone)
        if candidate > due and candidate.astimezone(zone).weekday() in weekdays:
            return candidate
    raise ValueError(f"no allowed weekday {sorted(weekdays)} within {_MAX_DAY_SEARCH} days")


# --------------------------------------------------------------------------------------------------
# Steps appended to a finished sequence (T9) and resuming a paused one (S5)


def appended_step_due(
    timing: StepTiming, ctx: TimingContext, last_fired: datetime, now: datetime
) -> datetime:
    """When a contact who had `finished` gets a newly appended step (SPEC T9).

    The due time is computed from `last_fired` as usual (T3/T4). If its minute is already over at
    `now` (the moment the step is appended), a step with `at` fires at the next HH:MM and any other
    at `default_send_time` on the day after `now`'s local date; `days:` still applies. Example
    (appended 18:00, last step 16:00): after 1 h → tomorrow 10:00; after 3 h → today 19:00;
    at 17:30 → tomorrow 17:30; at 18:30 → today 18:30.
    """
    last_fired = as_utc(last_fired, "last_fired")
    now = as_utc(now, "now")
    if now < last_fired:
        raise ValueError(f"now ({now.isoformat()}) is before the last step fired ({last_fired.isoformat()})")
    due = step_due(timing, ctx, last_fired)
    if not _minute_is_over(due, now, ctx.zone):
        return max(due, now)
    if timing.at is not None:
        fallback = _next_wall_time(local_date(now, ctx.zone), timing.at, ctx.zone, now)
    else:
        next_day = local_date(now, ctx.zone) + _DAY
        fallback = _next_wall_time(next_day, ctx.default_send_time, ctx.zone, now)
    return _on_allowed_weekday(fallback, timing.weekdays, ctx.zone)


def resume_due(
    original_due: datetime,
    paused_at: datetime,
    resumed_at: datetime,
    mode: ResumeMode,
    timing: StepTiming,
    ctx: TimingContext,
) -> datetime:
    """A waiting step's due time once its paused sequence resumes (SPEC S5).

    `continue` keeps the due time; one that passed during the pause fires at once (`resumed_at`),
    the send schedule still applying downstream. `restart` (Kartra) times the current step again
    from the moment of resume, with all of T3–T6.
    """
    original_due = as_utc(original_due, "original_due")
    paused_at = as_utc(paused_at, "paused_at")
    resumed_at = as_utc(resumed_at, "resumed_at")
    if resumed_at < paused_at:
        raise ValueError(
            f"resumed_at ({resumed_at.isoformat()}) is before paused_at ({paused_at.isoformat()})"
        )
    if mode == "continue":
        return max(original_due, resumed_at)
    if mode == "restart":
        return step_due(timing, ctx, resumed_at)
    raise ValueError(f"resume mode must be 'continue' or 'restart', got {mode!r}")


# --------------------------------------------------------------------------------------------------
# Date sequences (T7, T8)


def date_step_due(on_date: date, at: time | None, ctx: TimingContext) -> datetime:
    """A dated step fires at `at` (default `default_send_time`) on its date, in ctx.zone (T7)."""
    return local_to_utc(on_date, at if at is not None else ctx.default_send_time, ctx.zone)


def field_date_step_due(
    field_value: date | None,
    offset_days: int,
    annually: bool,
    at: time | None,
    ctx: TimingContext,
    now: datetime,
) -> datetime | None:
    """When a step dated from a contact's date field is due (SPEC T7); None if the field is empty.

    One-off: `field_value` + `offset_days` at `at`, even if already past; the caller then asks
    :func:`missed_window`. Annual: the first yearly occurrence not yet missed at `now`, i.e. due at
    or after `now - ctx.date_step_grace`, never before the field's own date comes round (a renewal
    date in 2027 does not fire in 2026). A fixed `on: {date}` step that repeats yearly is the same
    call with `offset_days=0`.
    """
    now = as_utc(now, "now")
    if field_value is None:
        return None
    if not annually:
        return date_step_due(field_value + timedelta(days=offset_days), at, ctx)
    return _first_annual_at_or_after(field_value, offset_days, at, ctx, now - ctx.date_step_grace)


def next_annual_due(
    anchor: date, offset_days: int, at: time | None, ctx: TimingContext, after: datetime
) -> datetime:
    """The first yearly occurrence strictly after `after` (T7/T8).

    Pass the occurrence that just fired or was missed to get next year's.
    """
    return _first_annual_at_or_after(
        anchor, offset_days, at, ctx, as_utc(after, "after") + timedelta(microseconds=1)
    )


def missed_window(due: datetime, reached: datetime, grace: timedelta) -> bool:
    """True when a dated step was reached more than `grace` after its time: skip it (T8).

    Exactly `grace` late still fires.
    """
    if grace < timedelta(0):
        raise ValueError(f"grace must not be negative, got {grace}")
    return as_utc(reached, "reached") - as_utc(due, "due") > grace


def calendar_order(steps: Iterable[tuple[K, datetime]]) -> list[K]:
    """Date steps in the order they fire: by due time, ties kept in sequence order (T7)."""
    indexed = [(as_utc(due, "due"), position, key) for position, (key, due) in enumerate(steps)]
    return [key for _, _, key in sorted(indexed, key=lambda item: (item[0], item[1]))]


def anniversary(anchor: date, year: int) -> date:
    """`anchor`'s month and day in `year`; 29 Feb becomes 28 Feb in common years (T7)."""
    if anchor.month == 2 and anchor.day == 29 and not _is_leap(year):
        return date(year, 2, 28)
    return anchor.replace(year=year)


def _first_annual_at_or_after(
    anchor: date, offset_days: int, at: time | None, ctx: TimingContext, threshold: datetime
) -> datetime:
    """The earliest yearly occurrence (from `anchor`'s own year on) at or after `threshold`."""
    offset = timedelta(days=offset_days)
    year = max(anchor.year, (local_date(threshold, ctx.zone) - offset).year - 1)
    while True:
        try:
            due = date_step_due(anniversary(anchor, year) + offset, at, ctx)
        except OverflowError as error:
            raise ValueError(
                f"no yearly occurrence of {anchor.isoformat()} after {threshold.isoformat()}"
            ) from error
        if due >= threshold:
            return due
        year += 1


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


# --------------------------------------------------------------------------------------------------
# Parsing the workspace file's time values

_DURATION_PART = re.compile(r"(\d+)\s*([wdhms])")
_DURATION_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_HHMM = re.compile(r"(\d{1,2}):(\d{2})")


def parse_duration(text: str) -> timedelta:
    """Parse "2h", "30m", "1d", "90s", "2w" or combinations such as "1d12h" (`date_step_grace`,
    cooldowns, `frequency.per`)."""
    if not isinstance(text, str):
        raise ValueError(f"duration must be a string such as '2h' or '30d', got {text!r}")
    compact = text.strip().lower()
    if not compact:
        raise ValueError("duration is empty; write it as a number and a unit, such as '2h' or '30d'")
    if compact.isdigit():
        raise ValueError(f"duration {text!r} has no unit; add one of w, d, h, m, s (such as '{compact}h')")
    total = timedelta(0)
    position = 0
    seen: set[str] = set()
    for match in _DURATION_PART.finditer(compact):
        if compact[position : match.start()].strip():
            break
        unit = match.group(2)
        if unit in seen:
            raise ValueError(f"duration {text!r} gives the unit '{unit}' twice")
        seen.add(unit)
        total += timedelta(**{_DURATION_UNITS[unit]: int(match.group(1))})
        position = match.end()
    if not seen or compact[position:].strip():
        raise ValueError(
            f"cannot read duration {text!r}; use whole numbers with units w, d, h, m, s, "
            "such as '2h', '30m' or '1d12h'"
        )
    return total


def parse_hhmm(text: str) -> time:
    """Parse a 24-hour "HH:MM" wall time such as "09:30" (`at`, `default_send_time`)."""
    if not isinstance(text, str):
        raise ValueError(f"time must be a string such as '09:30', got {text!r}")
    match = _HHMM.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"cannot read time {text!r}; write it as 24-hour HH:MM, such as '09:30' or '17:00'")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23:
        raise ValueError(f"time {text!r} has hour {hour}; hours run from 00 to 23")
    if minute > 59:
        raise ValueError(f"time {text!r} has minute {minute}; minutes run from 00 to 59")
    return time(hour, minute)


# --------------------------------------------------------------------------------------------------
# Validation shared by the input types


def _require_wall_time(value: time, name: str) -> None:
    if not isinstance(value, time):
        raise ValueError(f"{name} must be a datetime.time, got {value!r}")
    if value.tzinfo is not None:
        raise ValueError(
            f"{name} must be a wall time without tzinfo; the zone comes from the context (SPEC T1)"
        )


def _require_weekdays(weekdays: frozenset[int], name: str) -> None:
    if not isinstance(weekdays, frozenset):
        raise ValueError(f"{name} must be a frozenset of weekday numbers, got {weekdays!r}")
    if not weekdays:
        raise ValueError(f"{name} is empty: at least one weekday must be allowed")
    stray = sorted(day for day in weekdays if day not in _ALL_WEEKDAYS)
    if stray:
        raise ValueError(f"{name} has weekday numbers {stray}; use 0 (Monday) to 6 (Sunday)")
