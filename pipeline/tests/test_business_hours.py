"""Business time in a tenant's calendar: nights, weekends, Japanese public holidays,
time zones and DST."""

import datetime
import zoneinfo

import pytest

from pipeline.business_hours import Calendar, add_business_minutes, business_minutes_between

TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")
JP = Calendar()  # Mon–Fri 9:00–18:00 Asia/Tokyo, JP holidays


def tokyo(*args) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=TOKYO)


def test_within_one_day():
    assert add_business_minutes(JP, tokyo(2025, 10, 22, 10, 0), 120) == tokyo(2025, 10, 22, 12)


def test_friday_evening_rolls_to_monday():
    # Friday 19:00 (after hours): the clock starts Monday 9:00.
    deadline = add_business_minutes(JP, tokyo(2025, 10, 24, 19, 0), 8 * 60)
    assert deadline == tokyo(2025, 10, 27, 17, 0)


def test_friday_afternoon_spills_over_the_weekend():
    deadline = add_business_minutes(JP, tokyo(2025, 10, 24, 16, 0), 4 * 60)
    assert deadline == tokyo(2025, 10, 27, 11, 0)


def test_weekend_and_a_public_holiday():
    # Fri 31 Oct 17:00: 1 h that day; Sat, Sun, Mon 3 Nov (文化の日) off; 7 h Tuesday.
    deadline = add_business_minutes(JP, tokyo(2025, 10, 31, 17, 0), 8 * 60)
    assert deadline == tokyo(2025, 11, 4, 16, 0)


def test_substitute_holiday_counts_as_a_holiday():
    # 24 Nov 2025 is 振替休日 (勤労感謝の日 fell on a Sunday).
    assert not JP.is_working_day(datetime.date(2025, 11, 24))
    deadline = add_business_minutes(JP, tokyo(2025, 11, 21, 17, 0), 2 * 60)
    assert deadline == tokyo(2025, 11, 25, 10, 0)


def test_holidays_can_be_ignored_and_dates_added():
    calendar = Calendar(
        observe_holidays=False, closed_dates=frozenset({datetime.date(2025, 12, 31)})
    )
    assert calendar.is_working_day(datetime.date(2025, 11, 3))
    deadline = add_business_minutes(calendar, tokyo(2025, 12, 30, 17, 0), 2 * 60)
    assert deadline == tokyo(2026, 1, 1, 10, 0)  # 1 Jan is a holiday only when observed


def test_across_midnight():
    # 23:30 Wednesday: nothing counts until Thursday 9:00.
    assert add_business_minutes(JP, tokyo(2025, 10, 22, 23, 30), 60) == tokyo(2025, 10, 23, 10)
    # An amount that ends exactly at closing time ends there, not the next morning.
    assert add_business_minutes(JP, tokyo(2025, 10, 22, 17, 0), 60) == tokyo(2025, 10, 22, 18)


def test_start_given_in_utc_is_read_in_the_tenant_zone():
    # 2025-10-23 23:00 UTC is Friday 08:00 in Tokyo: counts from 09:00 Tokyo.
    start = datetime.datetime(2025, 10, 23, 23, 0, tzinfo=datetime.UTC)
    assert add_business_minutes(JP, start, 60) == tokyo(2025, 10, 24, 10, 0)


def test_tenant_time_zone_and_dst():
    london = Calendar(time_zone="Europe/London", country="GB")
    # Friday 24 Oct 2025 17:00 BST (16:00 UTC): 1 h that day; the clocks go back on
    # Sunday, so Monday 09:00 London is 09:00 UTC: +1 h -> 10:00 UTC.
    start = datetime.datetime(2025, 10, 24, 16, 0, tzinfo=datetime.UTC)
    deadline = add_business_minutes(london, start, 120)
    assert deadline == datetime.datetime(2025, 10, 27, 10, 0, tzinfo=datetime.UTC)


def test_custom_week_and_hours():
    calendar = Calendar(
        start=datetime.time(10), end=datetime.time(16), working_days=frozenset({0, 1, 2, 3, 4, 5})
    )
    # Saturday is a working day here.
    deadline = add_business_minutes(calendar, tokyo(2025, 10, 24, 15, 0), 3 * 60)
    assert deadline == tokyo(2025, 10, 25, 12, 0)


def test_minutes_between_skips_time_off():
    minutes = business_minutes_between(JP, tokyo(2025, 10, 31, 17, 0), tokyo(2025, 11, 4, 16, 0))
    assert minutes == 8 * 60


def test_no_working_days_fails_instead_of_looping():
    with pytest.raises(ValueError, match="no working time"):
        add_business_minutes(Calendar(working_days=frozenset()), tokyo(2025, 10, 22, 9), 60)
    with pytest.raises(ValueError, match="timezone-aware"):
        add_business_minutes(JP, datetime.datetime(2025, 10, 22, 9), 60)
