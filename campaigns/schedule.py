"""Venue-local time: schedules, daily windows and quiet hours, in the venue's IANA time zone.

``LocalTimes`` converts UTC epoch seconds to the venue's local date, weekday and minute of day,
honouring daylight-saving changes, and caches per UTC minute because events arrive roughly in
order (a whole batch of events usually shares one or two minutes).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaigns.const import LOCAL_TIME_CACHE_MAX
from campaigns.errors import CampaignValidationError
from campaigns.model import DailyWindow, Schedule


@dataclass(frozen=True, slots=True)
class LocalTime:
    date: dt.date
    weekday: int  # 0 = Monday
    minute: int  # minutes after local midnight
    day: str = ""  # the date as ISO text (budget days are keyed by it); filled in when left empty

    def __post_init__(self) -> None:
        if not self.day:
            object.__setattr__(self, "day", self.date.isoformat())


class LocalTimes:
    """UTC epoch seconds -> venue-local calendar facts; one instance per venue."""

    __slots__ = ("_cache", "tz", "tz_name")

    def __init__(self, tz_name: str) -> None:
        try:
            self.tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise CampaignValidationError("venue.timezone", f"unknown time zone {tz_name!r}") from None
        self.tz_name = tz_name
        self._cache: dict[int, LocalTime] = {}

    def at(self, t: float) -> LocalTime:
        utc_minute = int(t // 60)
        hit = self._cache.get(utc_minute)
        if hit is None:
            local = dt.datetime.fromtimestamp(utc_minute * 60, self.tz)
            hit = LocalTime(local.date(), local.weekday(), local.hour * 60 + local.minute)
            if len(self._cache) >= LOCAL_TIME_CACHE_MAX:
                self._cache.clear()
            self._cache[utc_minute] = hit
        return hit

    def day(self, t: float) -> str:
        return self.at(t).day


def in_schedule(schedule: Schedule, local: LocalTime) -> bool:
    if schedule.start_date is not None and local.date < schedule.start_date:
        return False
    if schedule.end_date is not None and local.date > schedule.end_date:
        return False
    if schedule.weekdays and local.weekday not in schedule.weekdays:
        return False
    if not schedule.windows:
        return True
    for w in schedule.windows:  # noqa: SIM110 - no generator on the hot path
        if w.contains(local.minute):
            return True
    return False


def in_quiet_hours(windows: tuple[DailyWindow, ...], local: LocalTime) -> bool:
    for w in windows:  # noqa: SIM110 - no generator on the hot path
        if w.contains(local.minute):
            return True
    return False
