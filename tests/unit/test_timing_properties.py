"""Property tests for the timing core over random zones, instants, delays and windows
(SPEC T1–T9, S5, D4, D7). Half the instants are drawn near real DST transitions, where bugs live."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import given, settings
from hypothesis import strategies as st

from dripflow.core.timing import (
    Delay,
    StepTiming,
    TimingContext,
    anniversary,
    appended_step_due,
    field_date_step_due,
    local_to_utc,
    next_annual_due,
    resume_due,
    step_due,
    wall_instants,
)
from dripflow.core.windows import Window, frequency_cap_next_slot, local_day_bounds, next_open

PROPERTY = settings(max_examples=150, deadline=None)
MINUTE = timedelta(minutes=1)
MIDNIGHT = time(0, 0)

ALL_ZONES = sorted(available_timezones())
TRICKY_ZONES = (
    "America/New_York",
    "Europe/London",
    "Europe/Dublin",  # negative DST in tzdata
    "Australia/Lord_Howe",  # 30-minute DST
    "Pacific/Chatham",  # +12:45/+13:45, changes at 02:45
    "America/Santiago",  # changes at midnight
    "Africa/Casablanca",  # Ramadan DST
    "Antarctica/Troll",  # 2-hour DST
    "Asia/Gaza",
    "Pacific/Apia",  # skipped 2011-12-30
)
FLAT_ODD_ZONES = ("Asia/Kathmandu", "Asia/Kolkata", "Australia/Eucla")  # :45/:30 offsets, no DST


@cache
def _transitions(key: str) -> tuple[datetime, ...]:
    """Offset changes of a zone in 2010–2028, found by daily sampling and bisection."""
    zone = ZoneInfo(key)
    found: list[datetime] = []
    day = datetime(2010, 1, 1, tzinfo=UTC)
    while day.year < 2029:
        nxt = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            low, high = day, nxt
            while high - low > timedelta(seconds=1):
                mid = low + (high - low) / 2
                if mid.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
                    low = mid
                else:
                    high = mid
            found.append(high.replace(microsecond=0))
        day = nxt
    return tuple(found)


zones = st.one_of(
    st.sampled_from(ALL_ZONES).map(ZoneInfo),
    st.sampled_from(TRICKY_ZONES + FLAT_ODD_ZONES).map(ZoneInfo),
)
random_instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2040, 12, 31), timezones=st.just(UTC)
)


@st.composite
def zone_and_instant(draw: st.DrawFn) -> tuple[ZoneInfo, datetime]:
    """A zone and an instant; half the time within 3 hours of one of the zone's DST changes."""
    if draw(st.booleans()):
        key = draw(st.sampled_from(TRICKY_ZONES))
        transition = draw(st.sampled_from(_transitions(key)))
        shift = draw(st.integers(-3 * 3600, 3 * 3600))
        jitter = timedelta(seconds=shift, microseconds=draw(st.integers(0, 999_999)))
        return ZoneInfo(key), transition + jitter
    return draw(zones), draw(random_instants)


wall_times = st.builds(time, st.integers(0, 23), st.integers(0, 59))
weekday_sets = st.frozensets(st.integers(0, 6), min_size=1)
delays = st.builds(Delay, st.integers(0, 9), st.integers(0, 30), st.integers(0, 180))
clock_delays = delays.filter(lambda d: d.has_clock_part)


def ctx(zone: ZoneInfo, slots: int = 0, send: time = time(10, 0)) -> TimingContext:
    return TimingContext(zone=zone, default_send_time=send, step_slots=slots)


def is_utc(moment: datetime) -> bool:
    return moment.tzinfo is UTC


def local_minute(moment: datetime, zone: ZoneInfo) -> time:
    return moment.astimezone(zone).time().replace(second=0, microsecond=0)


def floor_minute(moment: datetime) -> datetime:
    """Start of the minute (all offsets in 2000–2040 are whole minutes, so UTC and local agree)."""
    return moment.replace(second=0, microsecond=0)


def matches_wall_time_or_gap_end(result: datetime, zone: ZoneInfo, wanted: time) -> bool:
    """T2: the result shows `wanted`, or `wanted` did not exist and this is the first minute after.

    Minutes, not instants, are compared: a base inside the `at` minute fires at once (T3 decision).
    """
    if local_minute(result, zone) == wanted:
        return True
    result_date = result.astimezone(zone).date()
    return any(
        not wall_instants(day, wanted, zone) and floor_minute(result) == local_to_utc(day, wanted, zone)
        for day in (result_date, result_date - timedelta(days=1))
    )


# --------------------------------------------------------------------------------------------------
# T2


@PROPERTY
@given(zone=zones, day=st.dates(date(2000, 1, 1), date(2040, 12, 31)), wanted=wall_times)
def test_T2_local_to_utc_is_first_occurrence_or_first_valid_minute_after(
    zone: ZoneInfo, day: date, wanted: time
) -> None:
    """SPEC T2: an existing wall time maps to its first occurrence; a skipped one to the first
    valid minute after it (one minute earlier the clock still showed a time before it)."""
    result = local_to_utc(day, wanted, zone)
    assert is_utc(result)
    occurrences = wall_instants(day, wanted, zone)
    wall = datetime.combine(day, wanted)
    if occurrences:
        assert result == occurrences[0]
        assert result.astimezone(zone).replace(tzinfo=None) == wall
    else:
        assert result.astimezone(zone).replace(tzinfo=None) > wall
        assert (result - MINUTE).astimezone(zone).replace(tzinfo=None) < wall


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(TRICKY_ZONES), data=st.data())
def test_T2_gap_and_overlap_times_near_real_transitions(key: str, data: st.DataObject) -> None:
    """SPEC T2: wall times just around real transitions resolve to the first valid instant."""
    zone = ZoneInfo(key)
    transition = data.draw(st.sampled_from(_transitions(key)))
    moment = transition + timedelta(minutes=data.draw(st.integers(-120, 120)))
    local = moment.astimezone(zone)
    result = local_to_utc(local.date(), local.time().replace(second=0), zone)
    assert result <= moment  # the first occurrence of a wall time we observed is never later
    assert result.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None, second=0, fold=0)


# --------------------------------------------------------------------------------------------------
# T3–T6 via step_due


@PROPERTY
@given(
    zi=zone_and_instant(),
    after=delays,
    wanted=st.none() | wall_times,
    weekdays=st.none() | weekday_sets,
    slots=st.sampled_from((0, 30)),
)
def test_T3_T4_due_is_aware_utc_and_never_before_base(
    zi: tuple[ZoneInfo, datetime],
    after: Delay,
    wanted: time | None,
    weekdays: frozenset[int] | None,
    slots: int,
) -> None:
    """SPEC T1/T3/T4: a due time is a UTC instant at or after its base."""
    zone, base = zi
    due = step_due(StepTiming(after, wanted, weekdays), ctx(zone, slots), base)
    assert is_utc(due)
    assert due >= base


@PROPERTY
@given(zi=zone_and_instant(), days=st.integers(0, 9), wanted=wall_times)
def test_T3_at_steps_fire_at_their_wall_time(zi: tuple[ZoneInfo, datetime], days: int, wanted: time) -> None:
    """SPEC T3/T2: the result's local time is `at`, unless that wall time did not exist that day
    (then the first valid minute after); it is on or after the local date `days` later, and the
    day before that result would already have been past."""
    zone, base = zi
    due = step_due(StepTiming(Delay(days=days), wanted), ctx(zone), base)
    assert matches_wall_time_or_gap_end(due, zone, wanted)
    target = base.astimezone(zone).date() + timedelta(days=days)
    assert due.astimezone(zone).date() >= target
    if due.astimezone(zone).date() > target + timedelta(days=1):
        return  # only a skipped calendar day (Apia 2011) can push further
    if due.astimezone(zone).date() == target + timedelta(days=1) and wall_instants(target, wanted, zone):
        assert local_to_utc(target, wanted, zone) + MINUTE <= base  # target day's `at` had passed


@PROPERTY
@given(zi=zone_and_instant(), days=st.integers(1, 9), send=wall_times)
def test_T4_whole_days_land_on_the_right_local_date(
    zi: tuple[ZoneInfo, datetime], days: int, send: time
) -> None:
    """SPEC T4: whole days with no `at` fire at default_send_time on the local date D days on."""
    zone, base = zi
    due = step_due(StepTiming(Delay(days=days)), ctx(zone, send=send), base)
    target = base.astimezone(zone).date() + timedelta(days=days)
    assert due == local_to_utc(target, send, zone)
    if wall_instants(target, send, zone):
        assert due.astimezone(zone).date() == target
        assert local_minute(due, zone) == send


@PROPERTY
@given(zi=zone_and_instant(), after=clock_delays)
def test_T4_hour_and_minute_delays_are_exact(zi: tuple[ZoneInfo, datetime], after: Delay) -> None:
    """SPEC T4: hours/minutes fire exactly that long after base, days counting 24 h."""
    zone, base = zi
    assert step_due(StepTiming(after), ctx(zone), base) == base + after.as_timedelta()


@PROPERTY
@given(zi=zone_and_instant(), after=clock_delays)
def test_T5_slot_results_are_on_local_00_or_30_within_30_minutes(
    zi: tuple[ZoneInfo, datetime], after: Delay
) -> None:
    """SPEC T5: with slots, the result shows :00 or :30 locally, is not before the due minute and
    is less than 30 minutes after it, and is never before the base."""
    zone, base = zi
    exact = base + after.as_timedelta()
    due = step_due(StepTiming(after), ctx(zone, slots=30), base)
    local = due.astimezone(zone)
    assert local.minute in (0, 30) and local.second == 0 and local.microsecond == 0
    assert floor_minute(exact) <= due < floor_minute(exact) + timedelta(minutes=30)
    assert due > base


@PROPERTY
@given(
    zi=zone_and_instant(),
    after=delays,
    wanted=st.none() | wall_times,
    weekdays=weekday_sets,
    slots=st.sampled_from((0, 30)),
)
def test_T6_result_weekday_is_allowed_and_keeps_local_time(
    zi: tuple[ZoneInfo, datetime], after: Delay, wanted: time | None, weekdays: frozenset[int], slots: int
) -> None:
    """SPEC T6: the result falls on an allowed local weekday, within a week of the unrestricted due
    time and at the same local time (T2 applying if that time is skipped on the new day)."""
    zone, base = zi
    context = ctx(zone, slots)
    free = step_due(StepTiming(after, wanted), context, base)
    due = step_due(StepTiming(after, wanted, weekdays), context, base)
    assert due.astimezone(zone).weekday() in weekdays
    assert free <= due < free + timedelta(days=8)
    if due != free:
        assert due.astimezone(zone).date() > free.astimezone(zone).date()
        free_time = free.astimezone(zone).time()
        if local_minute(due, zone) != local_minute(free, zone):
            assert matches_wall_time_or_gap_end(due, zone, free_time.replace(second=0, microsecond=0))


# --------------------------------------------------------------------------------------------------
# T7/T8 annual steps


@PROPERTY
@given(
    zone=zones,
    anchor=st.dates(date(1940, 1, 1), date(2035, 12, 31)),
    offset=st.integers(-60, 60),
    wanted=st.none() | wall_times,
    now=random_instants,
)
def test_T7_annual_occurrence_is_first_not_yet_missed(
    zone: ZoneInfo, anchor: date, offset: int, wanted: time | None, now: datetime
) -> None:
    """SPEC T7/T8: the annual due time is the first occurrence (from the anchor's year on) not
    more than the grace before now, and next year's follows about a year later."""
    context = ctx(zone)
    due = field_date_step_due(anchor, offset, True, wanted, context, now)
    assert due is not None and is_utc(due)
    assert due >= now - context.date_step_grace
    fire_time = wanted or context.default_send_time
    local_year = (due.astimezone(zone).date() - timedelta(days=offset)).year
    candidates = [
        local_to_utc(anniversary(anchor, year) + timedelta(days=offset), fire_time, zone)
        for year in range(anchor.year, local_year + 2)
    ]
    assert due in candidates
    earlier = [c for c in candidates if c < due]
    assert all(c < now - context.date_step_grace for c in earlier)
    following = next_annual_due(anchor, offset, wanted, context, due)
    # 363: Pacific/Apia skipped 2011-12-30, so 2011-01-01 to 2012-01-01 took 364 days there.
    assert timedelta(days=363) < following - due < timedelta(days=367)


# --------------------------------------------------------------------------------------------------
# T9 and S5


@PROPERTY
@given(
    zi=zone_and_instant(),
    after=delays,
    wanted=st.none() | wall_times,
    weekdays=st.none() | weekday_sets,
    waited=st.integers(0, 10 * 24 * 60),
)
def test_T9_appended_step_never_fires_in_the_past(
    zi: tuple[ZoneInfo, datetime],
    after: Delay,
    wanted: time | None,
    weekdays: frozenset[int] | None,
    waited: int,
) -> None:
    """SPEC T9: an appended step is due no earlier than the moment it was appended, and keeps the
    normal due time when that has not yet passed."""
    zone, last_fired = zi
    now = last_fired + timedelta(minutes=waited)
    timing = StepTiming(after, wanted, weekdays)
    due = appended_step_due(timing, ctx(zone), last_fired, now)
    assert is_utc(due) and due >= now
    normal = step_due(timing, ctx(zone), last_fired)
    if normal >= now:
        assert due == normal
    if weekdays is not None:
        assert due.astimezone(zone).weekday() in weekdays


@PROPERTY
@given(zi=zone_and_instant(), due_shift=st.integers(-5000, 5000), pause=st.integers(0, 5000), after=delays)
def test_S5_resume_due_is_never_before_resume(
    zi: tuple[ZoneInfo, datetime], due_shift: int, pause: int, after: Delay
) -> None:
    """SPEC S5: continue keeps a future due time and fires overdue ones at resume; restart times
    the step afresh from resume."""
    zone, paused = zi
    resumed = paused + timedelta(minutes=pause)
    original = paused + timedelta(minutes=due_shift)
    timing = StepTiming(after)
    kept = resume_due(original, paused, resumed, "continue", timing, ctx(zone))
    assert kept == max(original, resumed)
    restarted = resume_due(original, paused, resumed, "restart", timing, ctx(zone))
    assert restarted == step_due(timing, ctx(zone), resumed)


# --------------------------------------------------------------------------------------------------
# T6 windows


@st.composite
def windows_and_moments(draw: st.DrawFn) -> tuple[Window, datetime]:
    zone, moment = draw(zone_and_instant())
    ranges = []
    for _ in range(draw(st.integers(0, 3))):
        start = draw(wall_times)
        start_minute = start.hour * 60 + start.minute
        end_minute = start_minute + draw(st.integers(1, 24 * 60 - start_minute))
        end = MIDNIGHT if end_minute == 24 * 60 else time(end_minute // 60, end_minute % 60)
        ranges.append((start, end))
    today = moment.astimezone(zone).date()
    excluded = draw(st.frozensets(st.integers(-2, 10).map(lambda n: today + timedelta(days=n)), max_size=5))
    return Window(zone=zone, days=draw(weekday_sets), hours=tuple(ranges), excluded_dates=excluded), moment


def open_by_definition(window: Window, moment: datetime) -> bool:
    """T6 from first principles: allowed weekday, not excluded, wall time inside a range."""
    local = moment.astimezone(window.zone)
    if local.weekday() not in window.days or local.date() in window.excluded_dates:
        return False
    now = local.time()
    return not window.hours or any(s <= now and (e == MIDNIGHT or now < e) for s, e in window.hours)


@PROPERTY
@given(wm=windows_and_moments())
def test_T6_next_open_is_open_and_nothing_earlier_is(wm: tuple[Window, datetime]) -> None:
    """SPEC T6: next_open is inside the window, at or after the moment, and no instant between
    them is open (checked minute by minute, where openness can change, for up to ~2 days)."""
    window, moment = wm
    result = next_open(window, moment)
    assert is_utc(result) and result >= moment
    assert open_by_definition(window, result)
    if result == moment:
        return
    assert not open_by_definition(window, result - timedelta(microseconds=1))
    assert not open_by_definition(window, moment)
    probe = floor_minute(moment) + MINUTE
    for _ in range(3000):
        if probe >= result:
            break
        assert not open_by_definition(window, probe), probe
        probe += MINUTE


# --------------------------------------------------------------------------------------------------
# D4 and D7


@PROPERTY
@given(zi=zone_and_instant())
def test_D4_local_day_bounds_contain_the_moment_and_one_local_date(zi: tuple[ZoneInfo, datetime]) -> None:
    """SPEC D4: the local day containing a moment starts and ends where its local date changes."""
    zone, moment = zi
    start, end = local_day_bounds(moment, zone)
    assert is_utc(start) and is_utc(end)
    assert start <= moment < end
    day = moment.astimezone(zone).date()
    tick = timedelta(microseconds=1)
    assert (start - tick).astimezone(zone).date() < day
    assert start.astimezone(zone).date() == day
    assert (end - tick).astimezone(zone).date() == day
    assert end.astimezone(zone).date() > day


@PROPERTY
@given(
    moment=random_instants,
    ages=st.lists(st.integers(0, 20 * 24 * 60), max_size=12),
    limit=st.integers(1, 5),
    per_hours=st.integers(1, 14 * 24),
)
def test_D7_frequency_cap_slot_fits_and_is_earliest(
    moment: datetime, ages: list[int], limit: int, per_hours: int
) -> None:
    """SPEC D7: at the returned instant one more message keeps ≤ max in every rolling window, and
    one microsecond earlier it would not (unless the result is the moment itself)."""
    per = timedelta(hours=per_hours)
    sent = [moment - timedelta(minutes=age) for age in ages]
    slot = frequency_cap_next_slot(sent, limit, per, moment)
    assert is_utc(slot) and slot >= moment

    def in_window(end: datetime) -> int:
        return sum(1 for s in sent if end - per < s <= end)

    assert in_window(slot) + 1 <= limit
    if slot > moment:
        assert in_window(slot - timedelta(microseconds=1)) + 1 > limit
