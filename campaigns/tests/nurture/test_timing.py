"""Waits and quiet hours in the tenant's time zone, including windows across midnight."""

import datetime

import pytest
from django.core.exceptions import ValidationError

from campaigns.nurture.timing import (
    in_quiet_hours,
    quiet_hours_end,
    wait_config_clean,
    wait_until,
)

TOKYO = "Asia/Tokyo"
UTC = datetime.UTC


def tokyo(*args) -> datetime.datetime:
    from zoneinfo import ZoneInfo

    return datetime.datetime(*args, tzinfo=ZoneInfo(TOKYO))


def test_a_duration_wait():
    now = datetime.datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    assert wait_until(now, {"seconds": 3600}, TOKYO) == now + datetime.timedelta(hours=1)


def test_until_a_weekday_window_in_the_tenant_zone():
    weekdays_9_to_18 = {"weekdays": [0, 1, 2, 3, 4], "window": ["09:00", "18:00"]}
    # Friday 20:00 in Tokyo -> Monday 09:00 Tokyo (= Monday 00:00 UTC).
    friday_evening = tokyo(2026, 11, 20, 20, 0)
    assert wait_until(friday_evening, weekdays_9_to_18, TOKYO) == datetime.datetime(
        2026, 11, 23, 0, 0, tzinfo=UTC
    )
    # Inside the window: now.
    tuesday_noon = tokyo(2026, 11, 24, 12, 0)
    assert wait_until(tuesday_noon, weekdays_9_to_18, TOKYO) == tuesday_noon
    # Early morning on a weekday: that day's opening.
    assert wait_until(tokyo(2026, 11, 24, 7, 30), weekdays_9_to_18, TOKYO) == tokyo(
        2026, 11, 24, 9, 0
    )
    # A duration first, then the window: 2 days from Thursday 17:00 is Saturday -> Monday.
    assert wait_until(
        tokyo(2026, 11, 19, 17, 0), {"seconds": 2 * 86400, **weekdays_9_to_18}, TOKYO
    ) == tokyo(2026, 11, 23, 9, 0)


def test_wait_config_is_checked():
    for bad in (
        {},
        {"seconds": -1},
        {"seconds": True},
        {"seconds": "60"},
        {"weekdays": [7]},
        {"weekdays": []},
        {"window": ["18:00", "09:00"]},
        {"window": ["9時", "18:00"]},
    ):
        with pytest.raises(ValidationError):
            wait_config_clean(bad)
    assert wait_config_clean({"weekdays": [4, 0, 0], "window": ["9:00", "18:00"]}) == {
        "weekdays": [0, 4],
        "window": ["09:00", "18:00"],
    }


QUIET = (datetime.time(21), datetime.time(8))  # across midnight


@pytest.mark.parametrize(
    ("local", "quiet", "resumes"),
    [
        (tokyo(2026, 11, 20, 20, 59), False, None),
        (tokyo(2026, 11, 20, 21, 0), True, tokyo(2026, 11, 21, 8, 0)),
        (tokyo(2026, 11, 20, 23, 30), True, tokyo(2026, 11, 21, 8, 0)),
        (tokyo(2026, 11, 21, 0, 0), True, tokyo(2026, 11, 21, 8, 0)),
        (tokyo(2026, 11, 21, 7, 59), True, tokyo(2026, 11, 21, 8, 0)),
        (tokyo(2026, 11, 21, 8, 0), False, None),
        (tokyo(2026, 11, 21, 12, 0), False, None),
    ],
)
def test_quiet_hours_across_midnight(local, quiet, resumes):
    now = local.astimezone(UTC)
    assert in_quiet_hours(now, *QUIET, TOKYO) is bool(quiet)
    assert quiet_hours_end(now, *QUIET, TOKYO) == (resumes or now)


def test_quiet_hours_within_a_day_and_none():
    lunch = (datetime.time(12), datetime.time(13))
    now = tokyo(2026, 11, 20, 12, 30)
    assert quiet_hours_end(now, *lunch, TOKYO) == tokyo(2026, 11, 20, 13, 0)
    assert not in_quiet_hours(tokyo(2026, 11, 20, 13, 0), *lunch, TOKYO)
    assert quiet_hours_end(now, None, None, TOKYO) == now
