"""Example-based tests for the timing core: SPEC T1–T9 and S5 (dripflow.core.timing)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from dripflow.core.timing import (
    Delay,
    StepTiming,
    TimingContext,
    anniversary,
    appended_step_due,
    as_utc,
    calendar_order,
    date_step_due,
    field_date_step_due,
    local_to_utc,
    missed_window,
    next_annual_due,
    parse_duration,
    parse_hhmm,
    resume_due,
    step_due,
    wall_instants,
)

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
KOLKATA = ZoneInfo("Asia/Kolkata")
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
WORKDAYS = frozenset({MON, TUE, WED, THU, FRI})


def at(
    zone: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, fold: int = 0
) -> datetime:
    """The UTC instant of a wall time in `zone`.

    Returned in UTC because PEP 495 makes `==` between zones False for ambiguous wall times.
    """
    return datetime(y, mo, d, h, mi, s, tzinfo=zone, fold=fold).astimezone(UTC)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def ctx(zone: ZoneInfo = NY, *, slots: int = 0, send: time = time(10, 0)) -> TimingContext:
    return TimingContext(zone=zone, default_send_time=send, step_slots=slots)


def wall(moment: datetime, zone: ZoneInfo) -> tuple[date, time]:
    local = moment.astimezone(zone)
    return local.date(), local.time()


# --------------------------------------------------------------------------------------------------
# T1: instants are UTC, wall times are read in a zone


def test_T1_naive_instants_are_rejected() -> None:
    """SPEC T1: a naive datetime is a bug; the core never guesses its zone."""
    with pytest.raises(ValueError, match="naive"):
        step_due(StepTiming(), ctx(), datetime(2026, 6, 8, 9, 0))
    with pytest.raises(ValueError, match="naive"):
        as_utc(datetime(2026, 6, 8))


def test_T1_results_are_aware_utc() -> None:
    """SPEC T1: whatever zone the input was in, the answer is a UTC instant."""
    due = step_due(StepTiming(Delay(days=1)), ctx(), at(LONDON, 2026, 6, 8, 9))
    assert due.tzinfo is UTC


def test_T1_at_is_read_in_the_context_zone() -> None:
    """SPEC T1: the same `at` is a different instant in New York and in London."""
    timing = StepTiming(Delay(days=1), at=time(7, 0))
    base = utc(2026, 6, 8, 12)
    assert step_due(timing, ctx(NY), base) == utc(2026, 6, 9, 11)
    assert step_due(timing, ctx(LONDON), base) == utc(2026, 6, 9, 6)


def test_T1_wall_times_must_not_carry_a_zone() -> None:
    """SPEC T1: the zone of a wall time comes from the context, never from the time itself."""
    with pytest.raises(ValueError, match="without tzinfo"):
        StepTiming(at=time(7, 0, tzinfo=UTC))


# --------------------------------------------------------------------------------------------------
# T2: daylight saving


def test_T2_new_york_gap_fires_at_first_valid_minute_after() -> None:
    """SPEC T2: 02:30 on 2026-03-08 does not exist in New York; it fires at 03:00 EDT."""
    assert local_to_utc(date(2026, 3, 8), time(2, 30), NY) == at(NY, 2026, 3, 8, 3, 0) == utc(2026, 3, 8, 7)
    assert local_to_utc(date(2026, 3, 8), time(2, 0), NY) == utc(2026, 3, 8, 7)


def test_T2_new_york_overlap_fires_at_first_occurrence() -> None:
    """SPEC T2: 01:30 on 2026-11-01 happens twice in New York; it fires once, at 01:30 EDT."""
    assert local_to_utc(date(2026, 11, 1), time(1, 30), NY) == utc(2026, 11, 1, 5, 30)
    assert wall_instants(date(2026, 11, 1), time(1, 30), NY) == (
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 6, 30),
    )


def test_T2_london_gap_and_overlap() -> None:
    """SPEC T2: Europe/London springs forward at 01:00 and falls back at 02:00."""
    assert local_to_utc(date(2026, 3, 29), time(1, 30), LONDON) == utc(2026, 3, 29, 1)  # 02:00 BST
    assert local_to_utc(date(2026, 10, 25), time(1, 30), LONDON) == utc(2026, 10, 25, 0, 30)  # BST


def test_T2_lord_howe_thirty_minute_gap_and_overlap() -> None:
    """SPEC T2: Australia/Lord_Howe moves its clocks by 30 minutes."""
    gap = local_to_utc(date(2026, 10, 4), time(2, 15), LORD_HOWE)
    assert wall(gap, LORD_HOWE) == (date(2026, 10, 4), time(2, 30))
    assert gap == utc(2026, 10, 3, 15, 30)
    overlap = local_to_utc(date(2026, 4, 5), time(1, 45), LORD_HOWE)
    assert overlap == utc(2026, 4, 4, 14, 45)  # +11:00, the first of two 01:45s
    assert len(wall_instants(date(2026, 4, 5), time(1, 45), LORD_HOWE)) == 2


def test_T2_zone_that_skipped_a_whole_day() -> None:
    """SPEC T2: Pacific/Apia skipped 2011-12-30; 10:00 that day fires when its clocks restart."""
    apia = ZoneInfo("Pacific/Apia")
    assert wall(local_to_utc(date(2011, 12, 30), time(10, 0), apia), apia) == (date(2011, 12, 31), time(0, 0))


def test_T2_step_at_time_in_gap_fires_at_gap_end() -> None:
    """SPEC T2 with T3: a step `at: 02:30` due on the spring-forward day fires at 03:00 EDT."""
    timing = StepTiming(Delay(days=1), at=time(2, 30))
    assert step_due(timing, ctx(), at(NY, 2026, 3, 7, 12)) == at(NY, 2026, 3, 8, 3, 0)


def test_T2_step_at_ambiguous_time_fires_once_at_first_occurrence() -> None:
    """SPEC T2 with T3: `at: 01:30` on the fall-back day fires at 01:30 EDT and not again at EST."""
    timing = StepTiming(at=time(1, 30))
    first = at(NY, 2026, 11, 1, 1, 30)
    assert step_due(timing, ctx(), at(NY, 2026, 11, 1, 0, 45)) == first
    # Reached between the two 01:30s: the first is past, so the next is the following day's.
    assert step_due(timing, ctx(), at(NY, 2026, 11, 1, 1, 45)) == at(NY, 2026, 11, 2, 1, 30)


# --------------------------------------------------------------------------------------------------
# T3: days with `at`


def test_T3_days_with_at_fire_on_local_date_d_days_later() -> None:
    """SPEC T3: `after: {days: 1}, at: "07:00"` fires at 07:00 on the next local date."""
    timing = StepTiming(Delay(days=1), at=time(7, 0))
    assert step_due(timing, ctx(), at(NY, 2026, 6, 8, 23, 30)) == at(NY, 2026, 6, 9, 7, 0)


def test_T3_local_date_not_utc_date_decides() -> None:
    """SPEC T3: 02:00 UTC on 9 June is still 8 June in New York, so day 1 is 9 June."""
    timing = StepTiming(Delay(days=1), at=time(7, 0))
    assert step_due(timing, ctx(), utc(2026, 6, 9, 2)) == at(NY, 2026, 6, 9, 7, 0)


def test_T3_at_already_past_moves_to_next_day() -> None:
    """SPEC T3: `at: "07:00"` with no days, reached at 08:00, fires tomorrow at 07:00."""
    timing = StepTiming(at=time(7, 0))
    assert step_due(timing, ctx(), at(NY, 2026, 6, 8, 8)) == at(NY, 2026, 6, 9, 7)
    assert step_due(timing, ctx(), at(NY, 2026, 6, 8, 6)) == at(NY, 2026, 6, 8, 7)


def test_T3_at_is_not_past_during_its_own_minute() -> None:
    """SPEC T3 (decision): 07:00 is past only once 07:01 begins; at 07:00:40 the step fires at once."""
    timing = StepTiming(at=time(7, 0))
    assert step_due(timing, ctx(), at(NY, 2026, 6, 8, 7, 0)) == at(NY, 2026, 6, 8, 7, 0)
    assert step_due(timing, ctx(), at(NY, 2026, 6, 8, 7, 0, 40)) == at(NY, 2026, 6, 8, 7, 0, 40)
    assert step_due(timing, ctx(), at(NY, 2026, 6, 8, 7, 1)) == at(NY, 2026, 6, 9, 7, 0)


def test_T3_days_with_at_across_spring_forward_keep_wall_time() -> None:
    """SPEC T3: one day later at 07:00 is 07:00 EDT even though that day has 23 hours."""
    timing = StepTiming(Delay(days=1), at=time(7, 0))
    assert step_due(timing, ctx(), at(NY, 2026, 3, 7, 8)) == utc(2026, 3, 8, 11)


def test_T3_each_step_is_timed_from_when_the_previous_fired() -> None:
    """SPEC T3: chained steps: enrollment → step 1 → step 2, each from the previous firing."""
    enrolled = at(NY, 2026, 6, 8, 13, 37)
    first = step_due(StepTiming(), ctx(), enrolled)
    second = step_due(StepTiming(Delay(days=1), at=time(7, 0)), ctx(), first)
    third = step_due(StepTiming(Delay(days=1), at=time(7, 0)), ctx(), second)
    assert (first, second, third) == (enrolled, at(NY, 2026, 6, 9, 7), at(NY, 2026, 6, 10, 7))


# --------------------------------------------------------------------------------------------------
# T4: whole days, zero, hours and minutes


def test_T4_whole_days_fire_at_default_send_time() -> None:
    """SPEC T4: `after: {days: 2}` with no `at` fires at 10:00 (account zone) two local dates on."""
    assert step_due(StepTiming(Delay(days=2)), ctx(), at(NY, 2026, 6, 8, 15)) == at(NY, 2026, 6, 10, 10)


def test_T4_whole_days_use_the_workspace_default_send_time() -> None:
    """SPEC T4: `default_send_time: "09:15"` replaces 10:00."""
    context = ctx(send=time(9, 15))
    due = step_due(StepTiming(Delay(days=1)), context, at(NY, 2026, 6, 8, 23, 59))
    assert due == at(NY, 2026, 6, 9, 9, 15)


def test_T4_after_zero_fires_at_once() -> None:
    """SPEC T4: `after: 0` (or no `after`) fires at the base moment itself."""
    base = at(NY, 2026, 6, 8, 13, 37, 12)
    assert step_due(StepTiming(), ctx(), base) == base
    assert step_due(StepTiming(Delay(days=0, hours=0, minutes=0)), ctx(slots=30), base) == base


def test_T4_hours_fire_exactly_that_long_after() -> None:
    """SPEC T4: `after: {hours: 4}` is four elapsed hours, to the second."""
    base = at(NY, 2026, 6, 8, 13, 37, 12)
    assert step_due(StepTiming(Delay(hours=4)), ctx(), base) == base + timedelta(hours=4)


def test_T4_days_count_as_24_hours_when_hours_are_given() -> None:
    """SPEC T4: `after: {days: 1, hours: 2}` is 26 elapsed hours, not 10:00 the next day."""
    base = at(NY, 2026, 6, 8, 13, 37)
    assert step_due(StepTiming(Delay(days=1, hours=2)), ctx(), base) == base + timedelta(hours=26)


def test_T4_hours_are_elapsed_time_across_dst() -> None:
    """SPEC T4: one hour after 01:30 EST on spring-forward night is 03:30 EDT."""
    due = step_due(StepTiming(Delay(hours=1)), ctx(), at(NY, 2026, 3, 8, 1, 30))
    assert due == at(NY, 2026, 3, 8, 3, 30)
    one_day = step_due(StepTiming(Delay(days=1, minutes=1)), ctx(), at(NY, 2026, 3, 7, 12))
    assert one_day == at(NY, 2026, 3, 8, 13, 1)  # 24 h + 1 min elapsed; the wall clock moved an hour


def test_T4_hours_with_at_wait_at_least_the_delay_then_the_next_at() -> None:
    """SPEC T4 (decision): `after: {hours: 4}, at: "09:00"`: not before 4 h have passed, at 09:00."""
    timing = StepTiming(Delay(hours=4), at=time(9, 0))
    assert step_due(timing, ctx(), at(NY, 2026, 6, 8, 4)) == at(NY, 2026, 6, 8, 9)
    assert step_due(timing, ctx(), at(NY, 2026, 6, 8, 6)) == at(NY, 2026, 6, 9, 9)
    assert step_due(timing, ctx(slots=30), at(NY, 2026, 6, 8, 5)) == at(NY, 2026, 6, 8, 9)


def test_T4_negative_or_fractional_delays_are_rejected() -> None:
    """SPEC T4: delays are whole, non-negative numbers."""
    with pytest.raises(ValueError, match="negative"):
        Delay(days=-1)
    with pytest.raises(ValueError, match="whole number"):
        Delay(hours=1.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# T5: 30-minute slots


@pytest.mark.parametrize(
    ("base", "delay", "expected"),
    [
        (at(NY, 2026, 6, 8, 14, 46), Delay(minutes=15), at(NY, 2026, 6, 8, 15, 30)),  # due 15:01 → 15:30
        (at(NY, 2026, 6, 8, 15, 0), Delay(minutes=15), at(NY, 2026, 6, 8, 15, 30)),  # due 15:15 → 15:30
        (at(NY, 2026, 6, 8, 14, 0), Delay(hours=1), at(NY, 2026, 6, 8, 15, 0)),  # due 15:00 → 15:00
        (at(NY, 2026, 6, 8, 14, 31), Delay(hours=1), at(NY, 2026, 6, 8, 16, 0)),  # due 15:31 → 16:00
        (at(NY, 2026, 6, 8, 23, 45), Delay(minutes=1), at(NY, 2026, 6, 9, 0, 0)),  # over midnight
    ],
)
def test_T5_slots_fire_at_next_00_or_30(base: datetime, delay: Delay, expected: datetime) -> None:
    """SPEC T5: with `step_slots: 30`, hour/minute delays fire at the first :00 or :30 at or after
    the due minute (ONTRAPORT: lands 3:01 PM, 15 min → 3:30 PM; lands 3:15 PM → 3:30 PM)."""
    assert step_due(StepTiming(delay), ctx(slots=30), base) == expected


def test_T5_seconds_do_not_push_to_the_next_slot() -> None:
    """SPEC T5 (decision): a step due 15:00:20 is due in minute 15:00 and fires 15:00:00."""
    base = at(NY, 2026, 6, 8, 14, 0, 20)
    assert step_due(StepTiming(Delay(hours=1)), ctx(slots=30), base) == at(NY, 2026, 6, 8, 15, 0, 0)


def test_T5_slots_are_wall_clock_in_half_hour_offset_zone() -> None:
    """SPEC T5: in Asia/Kolkata (+05:30) local :00/:30 are UTC :30/:00."""
    due = step_due(StepTiming(Delay(minutes=1)), ctx(KOLKATA, slots=30), at(KOLKATA, 2026, 6, 8, 10, 0))
    assert due == at(KOLKATA, 2026, 6, 8, 10, 30) == utc(2026, 6, 8, 5, 0)


def test_T5_slots_are_wall_clock_in_45_minute_offset_zone() -> None:
    """SPEC T5: in Asia/Kathmandu (+05:45) local 10:30 is 04:45 UTC, not a UTC :00/:30."""
    due = step_due(StepTiming(Delay(minutes=1)), ctx(KATHMANDU, slots=30), at(KATHMANDU, 2026, 6, 8, 10, 0))
    assert due == at(KATHMANDU, 2026, 6, 8, 10, 30) == utc(2026, 6, 8, 4, 45)


def test_T5_slots_across_lord_howe_half_hour_gap() -> None:
    """SPEC T5 with T2: 01:50 on Lord Howe's spring-forward night → next slot is 02:30 (+11)."""
    due = step_due(StepTiming(Delay(minutes=20)), ctx(LORD_HOWE, slots=30), at(LORD_HOWE, 2026, 10, 4, 1, 30))
    assert wall(due, LORD_HOWE) == (date(2026, 10, 4), time(2, 30))
    assert due - at(LORD_HOWE, 2026, 10, 4, 1, 50) == timedelta(minutes=10)


def test_T5_slots_do_not_apply_to_whole_days_or_at() -> None:
    """SPEC T5: slots round hour/minute delays only; `at` and default_send_time are exact."""
    context = ctx(slots=30, send=time(10, 10))
    assert step_due(StepTiming(Delay(days=1)), context, at(NY, 2026, 6, 8, 12)) == at(NY, 2026, 6, 9, 10, 10)
    assert step_due(StepTiming(at=time(7, 5)), context, at(NY, 2026, 6, 8, 6)) == at(NY, 2026, 6, 8, 7, 5)


def test_T5_only_0_or_30_slots() -> None:
    """SPEC T5: `step_slots` is 0 or 30."""
    with pytest.raises(ValueError, match="0 or 30"):
        TimingContext(zone=NY, step_slots=15)


# --------------------------------------------------------------------------------------------------
# T6: allowed weekdays on a step (send windows: test_windows.py)


def test_T6_disallowed_weekday_moves_to_next_allowed_day_same_time() -> None:
    """SPEC T6: a step due Saturday 07:00 with `days: [mon..fri]` fires Monday 07:00."""
    timing = StepTiming(Delay(days=1), at=time(7, 0), weekdays=WORKDAYS)
    assert step_due(timing, ctx(), at(NY, 2026, 6, 12, 9)) == at(NY, 2026, 6, 15, 7)


def test_T6_allowed_weekday_is_unchanged() -> None:
    """SPEC T6: a due time already on an allowed day stays put."""
    timing = StepTiming(Delay(hours=2), weekdays=WORKDAYS)
    assert step_due(timing, ctx(), at(NY, 2026, 6, 8, 9, 13)) == at(NY, 2026, 6, 8, 11, 13)


def test_T6_weekday_is_judged_in_the_local_zone() -> None:
    """SPEC T6: Friday 22:00 in New York is Saturday in UTC, but Friday is what counts."""
    timing = StepTiming(Delay(hours=1), weekdays=frozenset({FRI}))
    assert step_due(timing, ctx(), at(NY, 2026, 6, 12, 21)) == at(NY, 2026, 6, 12, 22)


def test_T6_moved_time_in_dst_gap_fires_at_gap_end() -> None:
    """SPEC T6 with T2: due Saturday 02:30, only Sundays allowed; Sunday 02:30 does not exist."""
    timing = StepTiming(Delay(hours=1), weekdays=frozenset({SUN}))
    assert step_due(timing, ctx(), at(NY, 2026, 3, 7, 1, 30)) == at(NY, 2026, 3, 8, 3, 0)


def test_T6_empty_or_bad_weekdays_are_rejected() -> None:
    """SPEC T6: `days:` needs at least one weekday, numbered 0–6."""
    with pytest.raises(ValueError, match="empty"):
        StepTiming(weekdays=frozenset())
    with pytest.raises(ValueError, match="0 \\(Monday\\)"):
        StepTiming(weekdays=frozenset({7}))


# --------------------------------------------------------------------------------------------------
# T7: date sequences


def test_T7_fixed_date_step_fires_at_at() -> None:
    """SPEC T7: `on: {date: "2026-12-01"}, at: "08:00"` → 08:00 that day, account zone."""
    assert date_step_due(date(2026, 12, 1), time(8, 0), ctx()) == at(NY, 2026, 12, 1, 8)


def test_T7_date_step_without_at_fires_at_default_send_time() -> None:
    """SPEC T7: no `at` → `default_send_time`."""
    assert date_step_due(date(2026, 12, 1), None, ctx()) == at(NY, 2026, 12, 1, 10)


def test_T7_field_date_with_negative_offset() -> None:
    """SPEC T7: `on: {field: birthday, offset: {days: -1}}` fires the day before the field's date."""
    now = at(NY, 2026, 1, 1)
    due = field_date_step_due(date(2026, 3, 10), -1, False, None, ctx(), now)
    assert due == at(NY, 2026, 3, 9, 10)


def test_T7_empty_date_field_gives_no_due_time() -> None:
    """SPEC T7: a contact without the date has no occurrence of the step."""
    assert field_date_step_due(None, 0, True, time(9), ctx(), at(NY, 2026, 1, 1)) is None


def test_T7_annual_step_fires_on_next_anniversary() -> None:
    """SPEC T7: a birthday of 1990-05-01, `annually`, at 09:00, seen in June → next May."""
    due = field_date_step_due(date(1990, 5, 1), 0, True, time(9), ctx(), at(NY, 2026, 6, 8))
    assert due == at(NY, 2027, 5, 1, 9)
    in_april = field_date_step_due(date(1990, 5, 1), 0, True, time(9), ctx(), at(NY, 2026, 4, 8))
    assert in_april == at(NY, 2026, 5, 1, 9)


def test_T7_annual_offset_can_cross_the_year() -> None:
    """SPEC T7: a 1 January birthday with `offset: {days: -1}` fires on 31 December."""
    due = field_date_step_due(date(1990, 1, 1), -1, True, None, ctx(), at(NY, 2026, 6, 8))
    assert due == at(NY, 2026, 12, 31, 10)


def test_T7_29_february_becomes_28_february_in_common_years() -> None:
    """SPEC T7: a 29 February birthday fires on 28 February in 2027 and on 29 February in 2028."""
    assert anniversary(date(2000, 2, 29), 2027) == date(2027, 2, 28)
    assert anniversary(date(2000, 2, 29), 2028) == date(2028, 2, 29)
    first = field_date_step_due(date(2000, 2, 29), 0, True, time(9), ctx(), at(NY, 2026, 6, 1))
    assert first == at(NY, 2027, 2, 28, 9)
    assert first is not None
    assert next_annual_due(date(2000, 2, 29), 0, time(9), ctx(), first) == at(NY, 2028, 2, 29, 9)


def test_T7_annual_step_never_fires_before_its_date_first_comes() -> None:
    """SPEC T7 (decision): a yearly renewal date of 2027-03-01 does not fire in March 2026."""
    due = field_date_step_due(date(2027, 3, 1), 0, True, None, ctx(), at(NY, 2026, 1, 1))
    assert due == at(NY, 2027, 3, 1, 10)


def test_T7_date_steps_fire_in_calendar_order() -> None:
    """SPEC T7: date steps are independent and fire by date, ties in sequence order."""
    steps = [
        ("launch", at(NY, 2026, 12, 1, 8)),
        ("bday", at(NY, 2026, 5, 1, 9)),
        ("eve", at(NY, 2026, 4, 30, 10)),
        ("also-launch", at(NY, 2026, 12, 1, 8)),
    ]
    assert calendar_order(steps) == ["eve", "bday", "launch", "also-launch"]


# --------------------------------------------------------------------------------------------------
# T8: grace for dated steps


def test_T8_reached_within_grace_still_fires() -> None:
    """SPEC T8: reached exactly `date_step_grace` late is not "more than" it: still fires."""
    due = at(NY, 2026, 12, 1, 8)
    assert not missed_window(due, due + timedelta(hours=2), timedelta(hours=2))
    assert not missed_window(due, due - timedelta(days=3), timedelta(hours=2))


def test_T8_reached_after_grace_is_missed() -> None:
    """SPEC T8: reached more than `date_step_grace` after its time → skipped (`missed_window`)."""
    due = at(NY, 2026, 12, 1, 8)
    assert missed_window(due, due + timedelta(hours=2, seconds=1), timedelta(hours=2))


def test_T8_annual_step_missed_today_waits_for_next_year() -> None:
    """SPEC T8: birthday 09:00 today; at 10:30 it can still go (grace 2 h); at 11:30 it waits a year."""
    birthday = date(1990, 6, 8)
    late = field_date_step_due(birthday, 0, True, time(9), ctx(), at(NY, 2026, 6, 8, 10, 30))
    assert late == at(NY, 2026, 6, 8, 9)
    too_late = field_date_step_due(birthday, 0, True, time(9), ctx(), at(NY, 2026, 6, 8, 11, 30))
    assert too_late == at(NY, 2027, 6, 8, 9)


def test_T8_missed_annual_occurrence_asks_for_next_year() -> None:
    """SPEC T8: the worker reaches this year's occurrence late; the caller asks for next year's."""
    due = at(NY, 2026, 6, 8, 9)
    reached = at(NY, 2026, 6, 8, 12)
    assert missed_window(due, reached, ctx().date_step_grace)
    assert next_annual_due(date(1990, 6, 8), 0, time(9), ctx(), due) == at(NY, 2027, 6, 8, 9)


def test_T8_one_off_field_step_returns_its_time_even_if_missed() -> None:
    """SPEC T8: a one-off date is returned as is, so the caller can record `missed_window`."""
    due = field_date_step_due(date(2026, 1, 5), 0, False, time(9), ctx(), at(NY, 2026, 6, 8))
    assert due == at(NY, 2026, 1, 5, 9)


# --------------------------------------------------------------------------------------------------
# T9: steps appended to a finished sequence — the SPEC's worked examples verbatim

APPENDED_AT = at(NY, 2026, 6, 10, 18, 0)  # "new step appended at 18:00", account zone
LAST_FIRED = APPENDED_AT - timedelta(hours=2)  # "last step 2 h ago"


def test_T9_after_1h_fires_tomorrow_at_10() -> None:
    """SPEC T9: last step 2 h ago, new step after 1 h → tomorrow 10:00."""
    due = appended_step_due(StepTiming(Delay(hours=1)), ctx(), LAST_FIRED, APPENDED_AT)
    assert due == at(NY, 2026, 6, 11, 10, 0)


def test_T9_after_3h_fires_19_today() -> None:
    """SPEC T9: last step 2 h ago, new step after 3 h → 19:00 today."""
    due = appended_step_due(StepTiming(Delay(hours=3)), ctx(), LAST_FIRED, APPENDED_AT)
    assert due == at(NY, 2026, 6, 10, 19, 0)


def test_T9_at_1730_fires_tomorrow_1730() -> None:
    """SPEC T9: `at: "17:30"` → tomorrow 17:30."""
    due = appended_step_due(StepTiming(at=time(17, 30)), ctx(), LAST_FIRED, APPENDED_AT)
    assert due == at(NY, 2026, 6, 11, 17, 30)


def test_T9_at_1830_fires_today_1830() -> None:
    """SPEC T9: `at: "18:30"` → today 18:30."""
    due = appended_step_due(StepTiming(at=time(18, 30)), ctx(), LAST_FIRED, APPENDED_AT)
    assert due == at(NY, 2026, 6, 10, 18, 30)


def test_T9_immediate_step_fires_next_day_at_default_send_time() -> None:
    """SPEC T9 (ONTRAPORT scenario 1): an appended "immediately" step fires tomorrow 10:00."""
    due = appended_step_due(StepTiming(), ctx(), LAST_FIRED, APPENDED_AT)
    assert due == at(NY, 2026, 6, 11, 10, 0)


def test_T9_later_appended_steps_follow_normally() -> None:
    """SPEC T9 (ONTRAPORT scenario 6): two steps of 1 day 10 h appended after 3 days at the end:
    the first fires 10:00 the next day, the second 1 day 10 h after that."""
    timing = StepTiming(Delay(days=1, hours=10))
    first = appended_step_due(timing, ctx(), APPENDED_AT - timedelta(days=3), APPENDED_AT)
    assert first == at(NY, 2026, 6, 11, 10, 0)
    assert step_due(timing, ctx(), first) == at(NY, 2026, 6, 12, 20, 0)


def test_T9_fallback_respects_allowed_weekdays() -> None:
    """SPEC T9 with T6: appended on a Friday, past due, weekdays only → Monday 10:00."""
    friday = at(NY, 2026, 6, 12, 18)
    timing = StepTiming(Delay(hours=1), weekdays=WORKDAYS)
    assert appended_step_due(timing, ctx(), friday - timedelta(hours=2), friday) == at(NY, 2026, 6, 15, 10)


def test_T9_now_before_last_fired_is_rejected() -> None:
    """SPEC T9: the last step cannot have fired after the step was appended."""
    with pytest.raises(ValueError, match="before the last step fired"):
        appended_step_due(StepTiming(), ctx(), APPENDED_AT, LAST_FIRED)


# --------------------------------------------------------------------------------------------------
# S5: resuming a paused sequence


PAUSED = at(NY, 2026, 6, 8, 9)
RESUMED = at(NY, 2026, 6, 10, 15)


def test_S5_continue_keeps_a_future_due_time() -> None:
    """SPEC S5: `continue` keeps each contact's due time."""
    due = at(NY, 2026, 6, 12, 10)
    assert resume_due(due, PAUSED, RESUMED, "continue", StepTiming(Delay(days=1)), ctx()) == due


def test_S5_continue_fires_overdue_steps_at_once() -> None:
    """SPEC S5: with `continue`, a step that fell due during the pause fires at resume."""
    due = at(NY, 2026, 6, 9, 10)
    assert resume_due(due, PAUSED, RESUMED, "continue", StepTiming(Delay(days=1)), ctx()) == RESUMED


def test_S5_restart_times_the_current_step_again_from_resume() -> None:
    """SPEC S5: `restart` (Kartra) starts the current step's delay again at resume."""
    due = at(NY, 2026, 6, 9, 10)
    four_hours = resume_due(due, PAUSED, RESUMED, "restart", StepTiming(Delay(hours=4)), ctx())
    assert four_hours == RESUMED + timedelta(hours=4)
    one_day = resume_due(due, PAUSED, RESUMED, "restart", StepTiming(Delay(days=1)), ctx())
    assert one_day == at(NY, 2026, 6, 11, 10)


def test_S5_resume_before_pause_or_unknown_mode_is_rejected() -> None:
    """SPEC S5: a resume cannot precede its pause; the mode is continue or restart."""
    with pytest.raises(ValueError, match="before paused_at"):
        resume_due(RESUMED, RESUMED, PAUSED, "continue", StepTiming(), ctx())
    with pytest.raises(ValueError, match="continue' or 'restart"):
        resume_due(RESUMED, PAUSED, RESUMED, "rewind", StepTiming(), ctx())  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Parsing (SPEC §2 values used by T4, T8, S2, D7)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", timedelta(hours=2)),
        ("30m", timedelta(minutes=30)),
        ("1d", timedelta(days=1)),
        ("90s", timedelta(seconds=90)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 1d 12h ", timedelta(days=1, hours=12)),
        ("0m", timedelta(0)),
    ],
)
def test_T8_parse_duration(text: str, expected: timedelta) -> None:
    """SPEC T8/S2/D7: `date_step_grace: 2h`, cooldowns such as `30d`, `per: 7d`."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("2", "no unit"),
        ("2y", "cannot read duration"),
        ("-2h", "cannot read duration"),
        ("1.5h", "cannot read duration"),
        ("h", "cannot read duration"),
        ("2h2h", "twice"),
    ],
)
def test_T8_parse_duration_errors(text: str, message: str) -> None:
    """SPEC T8: a bad duration names what is wrong."""
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


def test_T3_parse_hhmm() -> None:
    """SPEC T3: `at: "HH:MM"` in 24-hour form."""
    assert parse_hhmm("09:30") == time(9, 30)
    assert parse_hhmm("9:05") == time(9, 5)
    assert parse_hhmm("23:59") == time(23, 59)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("24:00", "hours run from 00 to 23"),
        ("09:60", "minutes run from 00 to 59"),
        ("9am", "HH:MM"),
        ("", "HH:MM"),
    ],
)
def test_T3_parse_hhmm_errors(text: str, message: str) -> None:
    """SPEC T3: a bad `at` says how to write it."""
    with pytest.raises(ValueError, match=message):
        parse_hhmm(text)
