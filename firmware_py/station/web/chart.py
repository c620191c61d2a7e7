"""The chart of the day, drawn on the server as inline SVG: entries per hour, denials by reason."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from firmware_py.core.event_line import REASON_LABELS


def entries_per_hour(events: list[dict], tz: ZoneInfo) -> list[int]:
    """Granted entries (``access_granted`` inward) in each hour 0–23 of the site's day; ``events`` as
    the page reads them (:mod:`.shown`): one whose time cannot be read is in no hour, a time without
    offset is the site's."""
    hours = [0] * 24
    for e in events:
        if e.get("type") == "access_granted" and e.get("direction") == "in":
            try:
                at = datetime.fromisoformat(e.get("ts") or "")
                hours[(at if at.tzinfo is None else at.astimezone(tz)).hour] += 1
            except (ValueError, OverflowError):
                continue
    return hours


def denials_by_reason(events: list[dict]) -> list[tuple[str, int]]:
    counts = Counter(e.get("reason") or "?" for e in events if e.get("type") == "access_denied")
    return counts.most_common()


def hours_svg(hours: list[int]) -> str:
    width, height, bar = 24 * 22 + 30, 160, 16
    top = max(hours + [1])
    parts = [f'<svg class="chart" role="img" aria-label="entries per hour" width="{width}" height="{height + 30}" '
             f'viewBox="0 0 {width} {height + 30}" xmlns="http://www.w3.org/2000/svg">',
             "<title>每小时进入 Entries per hour</title>",
             f'<text x="0" y="12" class="axis">{top}</text>']
    for h, n in enumerate(hours):
        x = 30 + h * 22
        bh = round(n / top * (height - 20))
        parts.append(f'<rect x="{x}" y="{height - bh}" width="{bar}" height="{bh}" data-hour="{h}" data-count="{n}">'
                     f'<title>{h:02d}:00 {n}</title></rect>')
        parts.append(f'<text x="{x + bar / 2}" y="{height + 14}" text-anchor="middle" class="axis">{h}</text>')
        if n:
            parts.append(f'<text x="{x + bar / 2}" y="{height - bh - 3}" text-anchor="middle" class="value">{n}</text>')
    parts.append("</svg>")
    return "".join(parts)


def reasons_svg(reasons: list[tuple[str, int]]) -> str:
    if not reasons:
        return '<p class="muted">无拒绝 no denials</p>'
    row, label_w, width = 22, 260, 560
    top = max(n for _, n in reasons)
    parts = [f'<svg class="chart" role="img" aria-label="denials by reason" width="{width}" '
             f'height="{row * len(reasons) + 4}" viewBox="0 0 {width} {row * len(reasons) + 4}" '
             'xmlns="http://www.w3.org/2000/svg"><title>拒绝原因 Denials by reason</title>']
    for i, (reason, n) in enumerate(reasons):
        y = i * row
        w = round(n / top * (width - label_w - 40))
        label = escape(REASON_LABELS.get(reason, reason))
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{label}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row - 6}" class="deny" '
                     f'data-reason="{escape(reason)}" data-count="{n}"></rect>')
        parts.append(f'<text x="{label_w + w + 4}" y="{y + 15}" class="value">{n}</text>')
    parts.append("</svg>")
    return "".join(parts)
