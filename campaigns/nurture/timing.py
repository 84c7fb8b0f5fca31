"""When a step may run: waits (a duration, or until a weekday/time window of the
tenant's time zone) and quiet hours (a local window, possibly across midnight).
Pure functions of aware datetimes, so the rules are tested without a clock."""

import datetime
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

MAX_WAIT_SECONDS = 366 * 24 * 3600


def parse_clock(value: str | datetime.time) -> datetime.time:
    if isinstance(value, datetime.time):
        return value
    for parse in (
        datetime.time.fromisoformat,
        lambda text: datetime.datetime.strptime(text, "%H:%M").time(),  # "9:00"
    ):
        try:
            return parse(str(value))
        except ValueError:
            continue
    raise ValidationError(_("Enter a time as HH:MM."))


def wait_config_clean(config: dict) -> dict:
    """{"seconds": n} and/or {"weekdays": [0..6], "window": ["HH:MM", "HH:MM"]}."""
    clean: dict = {}
    seconds = config.get("seconds")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise ValidationError(_("A wait is a whole number of seconds."))
        if not 0 <= seconds <= MAX_WAIT_SECONDS:
            raise ValidationError(_("A wait lasts between 0 seconds and a year."))
        clean["seconds"] = seconds
    weekdays = config.get("weekdays")
    if weekdays is not None:
        if not isinstance(weekdays, list) or not weekdays:
            raise ValidationError(_("Weekdays are a list of 0 (Monday) to 6 (Sunday)."))
        if any(isinstance(d, bool) or d not in range(7) for d in weekdays):
            raise ValidationError(_("Weekdays are a list of 0 (Monday) to 6 (Sunday)."))
        clean["weekdays"] = sorted(set(weekdays))
    window = config.get("window")
    if window is not None:
        if not isinstance(window, list | tuple) or len(window) != 2:
            raise ValidationError(_("A time window is [from, until]."))
        start, end = (parse_clock(value) for value in window)
        if start >= end:
            raise ValidationError(_("A time window ends after it starts."))
        clean["window"] = [start.strftime("%H:%M"), end.strftime("%H:%M")]
    if not clean:
        raise ValidationError(_("A wait needs a duration or a weekday/time window."))
    return clean


def wait_until(now: datetime.datetime, config: dict, tz: str) -> datetime.datetime:
    """The moment a wait step ends: `seconds` after now, then the first moment on one
    of `weekdays` inside `window` (local time of `tz`), if those are given."""
    when = now + datetime.timedelta(seconds=config.get("seconds", 0))
    weekdays = set(config.get("weekdays") or range(7))
    window = config.get("window")
    if not config.get("weekdays") and not window:
        return when
    zone = ZoneInfo(tz)
    local = when.astimezone(zone)
    start, end = (
        (parse_clock(window[0]), parse_clock(window[1]))
        if window
        else (datetime.time(0), datetime.time.max)
    )
    for days in range(8):
        day = local.date() + datetime.timedelta(days=days)
        if day.weekday() not in weekdays:
            continue
        opens = datetime.datetime.combine(day, start, tzinfo=zone)
        closes = datetime.datetime.combine(day, end, tzinfo=zone)
        if local < opens:
            return opens.astimezone(datetime.UTC)
        if local < closes:
            return local.astimezone(datetime.UTC)
    raise AssertionError("a week always has an allowed day")  # pragma: no cover


def in_quiet_hours(
    now: datetime.datetime, start: datetime.time | None, end: datetime.time | None, tz: str
) -> bool:
    if start is None or end is None or start == end:
        return False
    clock = now.astimezone(ZoneInfo(tz)).time()
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end  # across midnight, e.g. 21:00–08:00


def quiet_hours_end(
    now: datetime.datetime, start: datetime.time | None, end: datetime.time | None, tz: str
) -> datetime.datetime:
    """`now` if sending is allowed now, else the end of the quiet hours it falls in."""
    if not in_quiet_hours(now, start, end, tz):
        return now
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    day = local.date()
    if local.time() >= end:  # in the evening part of a window crossing midnight
        day += datetime.timedelta(days=1)
    return datetime.datetime.combine(day, end, tzinfo=zone).astimezone(datetime.UTC)
