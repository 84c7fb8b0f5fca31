"""Business time: adding N working minutes to an instant, in a tenant's calendar.

A calendar is the tenant's time zone, its working days and hours (wall clock), and
the days it is closed (public holidays of its country from the `holidays` package,
plus dates of its own). Each working day is one window [start, end) built in the
tenant's zone, so a DST change moves the window in UTC and never its wall-clock hours.
"""

import datetime
import functools
import zoneinfo
from dataclasses import dataclass, field

import holidays

MAX_DAYS = 3 * 366  # a calendar with (almost) no working days must not loop forever


@functools.cache
def _public_holidays(country: str, year: int) -> frozenset[datetime.date]:
    try:
        calendar = holidays.country_holidays(country, years=year)
    except NotImplementedError:
        calendar = holidays.country_holidays("JP", years=year)
    return frozenset(calendar)


@dataclass(frozen=True)
class Calendar:
    time_zone: str = "Asia/Tokyo"
    start: datetime.time = datetime.time(9, 0)
    end: datetime.time = datetime.time(18, 0)
    working_days: frozenset[int] = frozenset({0, 1, 2, 3, 4})
    country: str = "JP"
    observe_holidays: bool = True
    closed_dates: frozenset[datetime.date] = field(default_factory=frozenset)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    def is_working_day(self, day: datetime.date) -> bool:
        if day.weekday() not in self.working_days or day in self.closed_dates:
            return False
        return not (self.observe_holidays and day in _public_holidays(self.country, day.year))

    def window(self, day: datetime.date) -> tuple[datetime.datetime, datetime.datetime] | None:
        """The day's working window as aware datetimes, or None on a day off."""
        if not self.is_working_day(day):
            return None
        zone = self.zone
        return (
            datetime.datetime.combine(day, self.start, tzinfo=zone),
            datetime.datetime.combine(day, self.end, tzinfo=zone),
        )


def add_business_minutes(
    calendar: Calendar, start: datetime.datetime, minutes: float
) -> datetime.datetime:
    """The instant `minutes` of working time after `start` (aware). Time before the
    first window (a night, a weekend, a holiday) does not count; an amount that ends
    exactly at a window's close ends there, not at the next opening."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if calendar.start >= calendar.end:
        raise ValueError("the working day must end after it starts")
    remaining = datetime.timedelta(minutes=float(minutes))
    day = start.astimezone(calendar.zone).date()
    for _ in range(MAX_DAYS):
        window = calendar.window(day)
        if window is not None:
            opens, closes = window
            begin = max(opens, start)
            if begin < closes:
                available = closes - begin
                if remaining <= available:
                    return (begin + remaining).astimezone(datetime.UTC)
                remaining -= available
        day += datetime.timedelta(days=1)
    raise ValueError("no working time within three years: check the working days")


def business_minutes_between(
    calendar: Calendar, start: datetime.datetime, end: datetime.datetime
) -> float:
    """Working minutes from `start` to `end` (0 when end is not after start)."""
    if end <= start:
        return 0.0
    total = datetime.timedelta()
    day = start.astimezone(calendar.zone).date()
    last = end.astimezone(calendar.zone).date()
    while day <= last:
        window = calendar.window(day)
        if window is not None:
            begin, finish = max(window[0], start), min(window[1], end)
            if finish > begin:
                total += finish - begin
        day += datetime.timedelta(days=1)
    return total.total_seconds() / 60
