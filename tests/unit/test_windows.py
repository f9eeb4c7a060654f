"""Example-based tests for send windows, local days and the frequency cap (SPEC T6, §6, D4, D7)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from dripflow.core.windows import (
    Window,
    frequency_cap_next_slot,
    hold_reason,
    is_open,
    local_day_bounds,
    next_local_midnight,
    next_open,
    parse_hour_range,
)

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
WORKDAYS = frozenset({MON, TUE, WED, THU, FRI})


def at(
    zone: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, fold: int = 0
) -> datetime:
    """The UTC instant of a wall time in `zone` (UTC so that `==` is safe for ambiguous times)."""
    return datetime(y, mo, d, h, mi, s, tzinfo=zone, fold=fold).astimezone(UTC)


def hours(*ranges: str) -> tuple[tuple[time, time], ...]:
    return tuple(parse_hour_range(text) for text in ranges)


BUSINESS = Window(
    zone=NY,
    days=WORKDAYS,
    hours=hours("09:00-12:00", "13:00-17:00"),
    excluded_dates=frozenset({date(2026, 12, 24), date(2026, 12, 25)}),
)


# --------------------------------------------------------------------------------------------------
# T6: send windows


def test_T6_open_moment_is_returned_unchanged() -> None:
    """SPEC T6: a due email inside the window is not held."""
    moment = at(NY, 2026, 6, 8, 10, 17, 3)
    assert is_open(BUSINESS, moment)
    assert next_open(BUSINESS, moment) == moment
    assert hold_reason(BUSINESS, moment) is None


def test_T6_lunch_break_holds_until_next_range() -> None:
    """SPEC T6: 12:30 on a Monday waits for 13:00."""
    assert next_open(BUSINESS, at(NY, 2026, 6, 8, 12, 30)) == at(NY, 2026, 6, 8, 13, 0)


def test_T6_range_end_is_exclusive() -> None:
    """SPEC T6 (decision): "13:00-17:00" is open at 16:59:59 and closed at 17:00."""
    assert is_open(BUSINESS, at(NY, 2026, 6, 8, 16, 59, 59))
    assert not is_open(BUSINESS, at(NY, 2026, 6, 8, 17, 0))
    assert next_open(BUSINESS, at(NY, 2026, 6, 8, 17, 0)) == at(NY, 2026, 6, 9, 9, 0)


def test_T6_weekend_waits_for_monday() -> None:
    """SPEC T6: Friday evening and Saturday are held until Monday 09:00."""
    assert next_open(BUSINESS, at(NY, 2026, 6, 12, 17, 30)) == at(NY, 2026, 6, 15, 9, 0)
    assert next_open(BUSINESS, at(NY, 2026, 6, 13, 11, 0)) == at(NY, 2026, 6, 15, 9, 0)
    assert hold_reason(BUSINESS, at(NY, 2026, 6, 13, 11, 0)) == "outside_schedule"


def test_T6_excluded_dates_are_closed_all_day() -> None:
    """SPEC T6: 24 and 25 December are closed; Wednesday 23rd at 17:00 waits until Monday 28th."""
    assert next_open(BUSINESS, at(NY, 2026, 12, 23, 17, 0)) == at(NY, 2026, 12, 28, 9, 0)


def test_T6_excluded_date_is_judged_in_the_window_zone() -> None:
    """SPEC T1/T6: 02:00 UTC on 24 December is still the 23rd in New York, a working evening."""
    assert hold_reason(BUSINESS, datetime(2026, 12, 24, 2, 0, tzinfo=UTC)) == "outside_schedule"
    assert hold_reason(BUSINESS, at(NY, 2026, 12, 24, 10, 0)) == "excluded_date"


def test_T6_hold_reason_names_exclusion_only_when_it_is_the_cause() -> None:
    """SPEC §6 (decision): `excluded_date` only when the window would otherwise be open."""
    assert hold_reason(BUSINESS, at(NY, 2026, 12, 25, 10, 0)) == "excluded_date"
    assert hold_reason(BUSINESS, at(NY, 2026, 12, 25, 20, 0)) == "outside_schedule"
    saturday = Window(zone=NY, days=WORKDAYS, excluded_dates=frozenset({date(2026, 12, 26)}))
    assert hold_reason(saturday, at(NY, 2026, 12, 26, 10, 0)) == "outside_schedule"


def test_T6_window_is_read_in_its_own_zone() -> None:
    """SPEC T6: in Asia/Kathmandu (+05:45) 09:00 local is 03:15 UTC."""
    window = Window(zone=KATHMANDU, days=frozenset(range(7)), hours=hours("09:00-17:00"))
    opens = next_open(window, datetime(2026, 6, 8, 3, 0, tzinfo=UTC))
    assert opens == datetime(2026, 6, 8, 3, 15, tzinfo=UTC)


def test_T6_no_hours_means_all_day_and_midnight_end_means_end_of_day() -> None:
    """SPEC T6 (decision): no hour ranges = the whole day; "13:00-24:00" runs to midnight."""
    all_day = Window(zone=NY, days=frozenset({SAT}))
    assert next_open(all_day, at(NY, 2026, 6, 12, 15)) == at(NY, 2026, 6, 13, 0, 0)
    evening = Window(zone=NY, days=frozenset({MON}), hours=hours("13:00-24:00"))
    assert evening.hours == ((time(13, 0), time(0, 0)),)
    assert is_open(evening, at(NY, 2026, 6, 8, 23, 59, 59))
    assert not is_open(evening, at(NY, 2026, 6, 9, 0, 0))


def test_T6_range_starting_in_dst_gap_opens_at_gap_end() -> None:
    """SPEC T6 with T2: "02:30-04:00" on New York's spring-forward Sunday opens at 03:00 EDT."""
    window = Window(zone=NY, days=frozenset({SUN}), hours=hours("02:30-04:00"))
    assert next_open(window, at(NY, 2026, 3, 8, 0, 0)) == at(NY, 2026, 3, 8, 3, 0)


def test_T6_range_wholly_inside_dst_gap_is_closed_that_day() -> None:
    """SPEC T6 with T2: "02:00-02:30" does not happen on 2026-03-08 in New York; next Sunday."""
    window = Window(zone=NY, days=frozenset({SUN}), hours=hours("02:00-02:30"))
    assert next_open(window, at(NY, 2026, 3, 8, 0, 0)) == at(NY, 2026, 3, 15, 2, 0)


def test_T6_range_in_fall_back_overlap_is_open_in_both_occurrences() -> None:
    """SPEC T6 (decision): on 2026-11-01 "01:00-01:30" is open 01:00–01:30 EDT and again EST."""
    window = Window(zone=NY, days=frozenset({SUN}), hours=hours("01:00-01:30"))
    first = at(NY, 2026, 11, 1, 1, 0)
    second = at(NY, 2026, 11, 1, 1, 0, fold=1)
    assert second - first == timedelta(hours=1)
    assert next_open(window, at(NY, 2026, 11, 1, 0, 30)) == first
    assert next_open(window, at(NY, 2026, 11, 1, 1, 40)) == second


def test_T6_range_reopens_when_clocks_fall_back_into_it() -> None:
    """SPEC T6: "00:00-01:30" closes at 01:30 EDT and reopens when clocks go back to 01:00 EST."""
    window = Window(zone=NY, days=frozenset({SUN}), hours=hours("00:00-01:30"))
    assert next_open(window, at(NY, 2026, 11, 1, 1, 45)) == at(NY, 2026, 11, 1, 1, 0, fold=1)


def test_T6_london_range_across_spring_forward() -> None:
    """SPEC T6 with T2: Europe/London skips 01:00–02:00 on 2026-03-29; "01:30-03:00" opens 02:00 BST."""
    window = Window(zone=LONDON, days=frozenset({SUN}), hours=hours("01:30-03:00"))
    assert next_open(window, at(LONDON, 2026, 3, 29, 0, 0)) == at(LONDON, 2026, 3, 29, 2, 0)


def test_T6_lord_howe_half_hour_gap_closes_range() -> None:
    """SPEC T6 with T2: Lord Howe skips 02:00–02:30 on 2026-10-04; "02:00-02:30" waits a week."""
    window = Window(zone=LORD_HOWE, days=frozenset({SUN}), hours=hours("02:00-02:30"))
    assert next_open(window, at(LORD_HOWE, 2026, 10, 4, 0, 0)) == at(LORD_HOWE, 2026, 10, 11, 2, 0)


def test_T6_window_without_days_is_rejected() -> None:
    """SPEC T6 (decision): a schedule with no days could never open; it is refused when built."""
    with pytest.raises(ValueError, match="at least one day"):
        Window(zone=NY, days=frozenset())


def test_T6_bad_ranges_are_rejected() -> None:
    """SPEC T6: ranges must end after they start and may not cross midnight."""
    with pytest.raises(ValueError, match="cannot cross midnight"):
        parse_hour_range("22:00-02:00")
    with pytest.raises(ValueError, match="end before they start"):
        Window(zone=NY, days=WORKDAYS, hours=((time(9), time(9)),))
    with pytest.raises(ValueError, match="such as '09:00-17:00'"):
        parse_hour_range("09:00")
    with pytest.raises(ValueError, match="HH:MM"):
        parse_hour_range("9am-5pm")


def test_T6_naive_moment_is_rejected() -> None:
    """SPEC T1/T6: windows take aware instants only."""
    with pytest.raises(ValueError, match="naive"):
        next_open(BUSINESS, datetime(2026, 6, 8, 10, 0))


# --------------------------------------------------------------------------------------------------
# D4: the mailbox's local day


def test_D4_local_day_bounds_on_an_ordinary_day() -> None:
    """SPEC D4: a mailbox's day in New York in June runs 04:00 UTC to 04:00 UTC."""
    start, end = local_day_bounds(at(NY, 2026, 6, 8, 23, 59), NY)
    assert (start, end) == (at(NY, 2026, 6, 8), at(NY, 2026, 6, 9))
    assert end - start == timedelta(hours=24)


def test_D4_local_days_of_23_and_25_hours() -> None:
    """SPEC D4: DST days are 23 and 25 hours long."""
    start, end = local_day_bounds(at(NY, 2026, 3, 8, 12), NY)
    assert end - start == timedelta(hours=23)
    start, end = local_day_bounds(at(NY, 2026, 11, 1, 12), NY)
    assert end - start == timedelta(hours=25)


def test_D4_day_starting_in_a_midnight_gap() -> None:
    """SPEC D4 with T2: America/Santiago skips 00:00–01:00 on 2026-09-06; that day starts at 01:00."""
    santiago = ZoneInfo("America/Santiago")
    start, _ = local_day_bounds(at(santiago, 2026, 9, 6, 12), santiago)
    assert start.astimezone(santiago).time() == time(1, 0)


def test_D4_next_local_midnight_is_when_capped_mailbox_resumes() -> None:
    """SPEC D4: a mailbox at its daily cap resumes at the next local midnight."""
    assert next_local_midnight(at(NY, 2026, 6, 8, 15), NY) == at(NY, 2026, 6, 9)
    assert next_local_midnight(at(NY, 2026, 6, 8, 15), LONDON) == at(LONDON, 2026, 6, 9)


# --------------------------------------------------------------------------------------------------
# D7: frequency cap


DAY0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def test_D7_under_the_cap_sends_now() -> None:
    """SPEC D7: two emails this week with `max: 3, per: 7d` → the third may go now."""
    sent = [DAY0, DAY0 + timedelta(days=1)]
    moment = DAY0 + timedelta(days=2)
    assert frequency_cap_next_slot(sent, 3, WEEK, moment) == moment


def test_D7_at_the_cap_waits_until_oldest_drops_out() -> None:
    """SPEC D7: three emails on days 0, 1, 2 → the fourth waits until day 7 at the first's hour."""
    sent = [DAY0 + timedelta(days=2), DAY0, DAY0 + timedelta(days=1)]
    assert frequency_cap_next_slot(sent, 3, WEEK, DAY0 + timedelta(days=3)) == DAY0 + WEEK


def test_D7_rolling_window_is_half_open() -> None:
    """SPEC D7 (decision): max 1 per 7d, sent Monday 09:00 → next Monday 09:00 exactly is allowed."""
    assert frequency_cap_next_slot([DAY0], 1, WEEK, DAY0 + WEEK) == DAY0 + WEEK
    assert frequency_cap_next_slot([DAY0], 1, WEEK, DAY0 + timedelta(days=6)) == DAY0 + WEEK


def test_D7_already_over_the_cap_waits_for_enough_to_drop_out() -> None:
    """SPEC D7: four in the window (max lowered to 2) → wait until only one remains."""
    sent = [DAY0 + timedelta(days=n) for n in range(4)]
    assert frequency_cap_next_slot(sent, 2, WEEK, DAY0 + timedelta(days=4)) == DAY0 + timedelta(days=2) + WEEK


def test_D7_bad_arguments_are_rejected() -> None:
    """SPEC D7: max ≥ 1, a positive period, and sends no later than now."""
    with pytest.raises(ValueError, match="at least 1"):
        frequency_cap_next_slot([], 0, WEEK, DAY0)
    with pytest.raises(ValueError, match="positive"):
        frequency_cap_next_slot([], 1, timedelta(0), DAY0)
    with pytest.raises(ValueError, match="later than moment"):
        frequency_cap_next_slot([DAY0 + timedelta(seconds=1)], 1, WEEK, DAY0)


def test_T6_each_excluded_date_can_cost_a_whole_week() -> None:
    """SPEC T6: Wednesdays only, next two Wednesdays excluded → the third Wednesday (regression)."""
    window = Window(
        zone=NY,
        days=frozenset({WED}),
        excluded_dates=frozenset({date(2010, 3, 17), date(2010, 3, 24)}),
    )
    assert next_open(window, at(NY, 2010, 3, 14, 3, 0)) == at(NY, 2010, 3, 31, 0, 0)
