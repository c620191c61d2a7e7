"""The working-hours calendar: when each schedule group may be in the room.

Pure functions over :class:`~firmware_py.config.schema.CalendarConfig` and the site's
time zone; no clock is read here, the caller passes the time.

The rules, in order:

1. A public **holiday** closes the room for every group, even on a weekday.
2. An **adjusted working day** (a weekend worked in exchange for a holiday)
   opens with the windows of the weekday named by ``adjusted_day_schedule``
   (``mon`` in the example config), whatever weekday it falls on.
3. Any other day uses the group's windows for that weekday.

"Working day" depends on who asks. ``is_working_day(d)`` without a group
answers the calendar's question: is this a day the venue works (not a
holiday, and either an adjusted working day or a weekday on which at least one
group has windows)? ``is_working_day(d, group)`` answers for one group: does
that group have at least one window on ``d``? A supervisor's wider group and
the office group therefore agree on holidays and adjusted days, and a group
whose week has no Saturday windows has a non-working Saturday even if another
group works it.

Windows include their start and exclude their end (08:30-12:00 is open at
08:30:00 and closed at 12:00:00). Times passed in are converted to the site's
zone first, so a UTC time from a log is judged by the clock on the room's wall.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from firmware_py.config.schema import WEEKDAYS, CalendarConfig, TimeWindow

log = logging.getLogger(__name__)

NON_WORKING_DAY = "non_working_day"
OUTSIDE_WORKING_HOURS = "outside_working_hours"

# How far next_window_end looks ahead: a year and a bit covers the longest
# closure (Spring Festival) with room to spare; a calendar with no windows at
# all ends the search.
_SEARCH_DAYS = 370


class WorkingHours:
    """The site's working-hours calendar.

    ``calendar`` is the ``[calendar]`` section of the configuration;
    ``tz`` the site's time zone, in which dates and windows are read.
    """

    def __init__(self, calendar: CalendarConfig, tz: ZoneInfo):
        self.calendar = calendar
        self.tz = tz

    # ------------------------------------------------------------------ days

    @property
    def groups(self) -> tuple[str, ...]:
        """The schedule groups the configuration defines."""
        return tuple(self.calendar.schedules)

    def _week(self, group: str) -> dict[str, tuple[TimeWindow, ...]]:
        try:
            return self.calendar.schedules[group]
        except KeyError:
            known = ", ".join(sorted(self.calendar.schedules)) or "none"
            raise KeyError(
                f"schedule group {group!r} is not in the configuration's [calendar.schedule.*] "
                f"(known groups: {known})"
            ) from None

    def is_holiday(self, d: date) -> bool:
        return d in self.calendar.holidays

    def is_adjusted_working_day(self, d: date) -> bool:
        return d in self.calendar.working_days

    def windows_on(self, d: date, group: str) -> tuple[TimeWindow, ...]:
        """The group's windows on date ``d`` (empty on a holiday or a day the group does not work)."""
        week = self._week(group)
        if self.is_holiday(d):
            return ()
        if self.is_adjusted_working_day(d):
            return week.get(self.calendar.adjusted_day_schedule, ())
        return week.get(WEEKDAYS[d.weekday()], ())

    def is_working_day(self, d: date, group: str | None = None) -> bool:
        """Whether ``d`` is worked: by the venue (no group) or by ``group`` (see the module docstring)."""
        if group is not None:
            return bool(self.windows_on(d, group))
        if self.is_holiday(d):
            return False
        if self.is_adjusted_working_day(d):
            return True
        day = WEEKDAYS[d.weekday()]
        return any(week.get(day) for week in self.calendar.schedules.values())

    # ------------------------------------------------------------------ moments

    def _local(self, at: datetime) -> datetime:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"{at.isoformat()} has no time zone; the calendar needs timezone-aware times")
        return at.astimezone(self.tz)

    def is_open(self, at: datetime, group: str) -> bool:
        """Whether ``at`` falls inside one of the group's windows (start inclusive, end exclusive)."""
        local = self._local(at)
        t = local.time()
        return any(w.contains(t) for w in self.windows_on(local.date(), group))

    def closed_reason(self, at: datetime, group: str) -> str | None:
        """Why the room is closed to ``group`` at ``at``: ``non_working_day``,
        ``outside_working_hours``, or None when it is open."""
        local = self._local(at)
        if not self.is_working_day(local.date(), group):
            return NON_WORKING_DAY
        if not self.is_open(local, group):
            return OUTSIDE_WORKING_HOURS
        return None

    def window_ends(self, d: date, group: str) -> list[datetime]:
        """The ends of the group's windows on ``d``, timezone-aware, earliest first."""
        return [datetime.combine(d, w.end, tzinfo=self.tz) for w in self.windows_on(d, group)]

    def next_window_end(self, after: datetime, groups: Iterable[str]) -> datetime | None:
        """The first end of a window of any of ``groups`` strictly after ``after``.

        The controller sleeps until then and raises ``overstay`` for anyone
        still inside. None when no group has a window in the next year (or
        ``groups`` is empty).
        """
        groups = tuple(groups)
        for g in groups:
            self._week(g)  # unknown groups fail loudly, not as "no more windows"
        if not groups:
            return None
        local = self._local(after)
        day = local.date()
        for _ in range(_SEARCH_DAYS):
            ends = sorted(e for g in groups for e in self.window_ends(day, g) if e > local)
            if ends:
                return ends[0]
            day += timedelta(days=1)
        log.warning("no working window ends within %d days of %s for %s", _SEARCH_DAYS, local, groups)
        return None
