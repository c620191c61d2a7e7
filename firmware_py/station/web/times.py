"""Times as a supervisor reads them: short, local, the date only when it is not today.

``2026-11-23T08:26:00.000+08:00`` is shown as ``08:26:00`` on the 23rd, ``11-23 08:26:00`` on
another day of 2026, ``2025-11-23 08:26:00`` in another year; the full time with its offset and
the zone is the tooltip. A time is shown in the station's zone when one is given (so the audit
and the archive read alike), else at the offset it was written with. A text that is not a time is
shown as it is.
"""

from __future__ import annotations

from datetime import date, datetime
from html import escape
from zoneinfo import ZoneInfo


def parse(ts: object, tz: ZoneInfo | None = None) -> datetime | None:
    """``ts`` as an aware time (in ``tz`` when given); a time without offset is taken in ``tz``."""
    if not isinstance(ts, str) or not ts:
        return None
    try:
        at = datetime.fromisoformat(ts)
    except ValueError:
        return None
    if at.tzinfo is None:
        return at.replace(tzinfo=tz) if tz else None
    try:
        return at.astimezone(tz) if tz else at
    except (OverflowError, ValueError):
        return None


def short(ts: object, tz: ZoneInfo | None = None, today: date | None = None) -> str:
    """The short text of ``ts`` (the input as it is when it is not a time)."""
    at = parse(ts, tz)
    if at is None:
        return "" if ts is None else str(ts)
    today = today or datetime.now(at.tzinfo).date()
    if at.date() == today:
        return at.strftime("%H:%M:%S")
    if at.year == today.year:
        return at.strftime("%m-%d %H:%M:%S")
    return at.strftime("%Y-%m-%d %H:%M:%S")


def full(ts: object, tz: ZoneInfo | None = None) -> str:
    """The whole time with milliseconds, offset and zone: the tooltip."""
    at = parse(ts, tz)
    if at is None:
        return "" if ts is None else str(ts)
    zone = f" {tz.key}" if tz else ""
    return at.isoformat(sep=" ", timespec="milliseconds") + zone


def time_html(ts: object, tz: ZoneInfo | None = None, today: date | None = None) -> str:
    """A ``<time>`` element: the short text, the machine-readable time and the full one as its tooltip."""
    at = parse(ts, tz)
    if at is None:
        return escape("" if ts is None else str(ts))
    return (f'<time datetime="{escape(at.isoformat(timespec="milliseconds"))}" title="{escape(full(ts, tz))}">'
            f"{escape(short(ts, tz, today))}</time>")
