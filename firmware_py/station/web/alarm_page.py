"""The alarm queue's HTML (``/alarms``), an alarm's events around it, and the alarm line of a door tile.

The page's contract (DESIGN.md "The control room"): each open alarm is a row of ``#open-alarms``
with ``data-site``, ``data-door``, ``data-epoch``, ``data-seq``, ``data-type``, ``data-rank`` (its
priority), ``data-id`` (its event's archive id: the ``before`` cursor of the next page) and
``data-key`` (its name for a bulk acknowledgement); an operator's control on each
row carries ``data-action="acknowledge"``, the one for the chosen rows ``acknowledge_chosen``;
the count of open alarms is in every ``[data-open-alarms]``; ``data-sound`` on a row says which
sound a new alarm of its kind makes (``duress`` or ``alarm``). The filters are the register's
(:func:`.search_pages.search_form`), the paging its keyset links. The rows are made here for the page
and for the live stream alike (:mod:`.stream`), so a row that arrives live is the row a reload
shows. Every value goes through :func:`.pages.h`.
"""

from __future__ import annotations

from urllib.parse import urlencode

from firmware_py.station.accounts.accounts import Session, role_allows
from firmware_py.station.web import pages, search_pages
from firmware_py.station.web.alarms import PRIORITY, STANDARD_COMMENTS, Alarm
from firmware_py.station.web.pages import csrf_field, h, q
from firmware_py.station.web.queries import DoorRow
from firmware_py.station.web.search import Filters

EXTRA_LABELS = {"duress": "胁迫报警 duress"}
RANK_LABELS = {0: "紧急 urgent", 1: "高 high", 2: "中 medium", 3: "一般 normal"}
ALARM_TYPES = ("duress", "door_forced", "tamper", "screening_alarm", "tailgating", "door_held_open", "overstay",
               "repeated_failures", "hardware_fault", "link_down", "clock_unsynchronised", "clock_drift")


def label(type_: str) -> str:
    return EXTRA_LABELS.get(type_) or pages.type_label(type_)


def short_time(ts: str) -> str:
    """``11-23 08:26:00`` of an ISO 8601 time (the whole of it in the cell's tooltip)."""
    return f"{ts[5:10]} {ts[11:19]}" if len(ts) >= 19 and ts[10] == "T" else ts


def _seq_text(a: Alarm) -> str:
    return f"#{a.seq}" + (f" (第 {a.epoch} 段 epoch {a.epoch})" if a.epoch > 1 else "")


def around_link(a: Alarm) -> str:
    return (f'<a class="around" href="/alarms/{q(a.site)}/{q(a.door)}/{a.seq}?epoch={a.epoch}">'
            f'前后事件 Events around</a>')


def sound(type_: str) -> str:
    """The sound a new alarm of ``type_`` makes on the page: duress its own, every other alarm one."""
    return "duress" if type_ == "duress" else "alarm"


def query_of(f: Filters) -> dict:
    """The query parameters of the queue's page ``f``: its filters and its cursor."""
    return {**f.params(), **({"before": str(f.before)} if f.before is not None else {})}


def back_to(params: dict) -> str:
    """The queue with the query ``params``: where an acknowledgement returns to."""
    query = urlencode({k: v for k, v in params.items() if v})
    return "/alarms" + (f"?{query}" if query else "")


def queue_row(a: Alarm, index: int, session: Session, back: str = "/alarms") -> str:
    """One open alarm: a box to choose it for a bulk acknowledgement, what it says, a link to its
    door's events around it and (for an operator) its own acknowledgement (then back to ``back``)."""
    operator = role_allows(session.role, "operator")
    pick = control = ""
    if operator:
        pick = (f'<input type="checkbox" form="bulk-ack" name="pick-{index}" value="{h(a.key)}" '
                f'aria-label="选择 Select {h(a.door)} {_seq_text(a)}">')
        action = f"/alarms/{q(a.site)}/{q(a.door)}/{a.seq}/acknowledge"
        control = (f'<form method="post" action="{action}" class="inline ack">'
                   f'{csrf_field(session)}<input type="hidden" name="epoch" value="{a.epoch}">'
                   f'<input type="hidden" name="next" value="{h(back)}">'
                   '<input name="comment" list="ack-comments" placeholder="处置说明 comment" required maxlength="500" '
                   'aria-label="处置说明 Comment">'
                   '<button type="submit" data-action="acknowledge">确认 Acknowledge</button></form>')
    rank = min(a.rank, 3)
    return (f'<tr class="alarm rank-{rank}" data-key="{h(a.key)}" data-site="{h(a.site)}" data-door="{h(a.door)}" '
            f'data-epoch="{a.epoch}" data-seq="{a.seq}" data-type="{h(a.type)}" data-rank="{rank}" '
            f'data-id="{a.id or ""}" data-sound="{sound(a.type)}">'
            f'<td>{pick}</td><td class="time" title="{h(a.ts)}">{h(short_time(a.ts))}</td>'
            f'<td>{h(a.site)}/{h(a.door)}</td><td>{_seq_text(a)}</td><td>{RANK_LABELS[rank]}</td>'
            f'<td class="what">{h(label(a.type))}</td><td data-field="summary">{h(a.summary)}</td>'
            f'<td>{around_link(a)}</td><td>{control}</td></tr>')


def queue_rows(alarms: list[Alarm], session: Session, params: dict) -> list[dict]:
    """The queue's rows for the live stream (the page's query ``params``): ``key`` and ``html`` of each, in order."""
    back = back_to(params)
    return [{"key": a.key, "html": queue_row(a, i, session, back)} for i, a in enumerate(alarms)]


def alarm_types() -> list[tuple[str, str]]:
    """The queue's type filter: every alarm type with its label."""
    return [(t, label(t)) for t in ALARM_TYPES]


def paging(f: Filters, next_before: int | None, shown: int) -> str:
    return search_pages.paging("/alarms", f, next_before, shown, live=True)


def alarms_page(open_alarms: list[Alarm], next_before: int | None, total_open: int, done: list[Alarm],
                closed: list[Alarm], f: Filters, doors: list[DoorRow], last_id: int, session: Session) -> str:
    """The queue's page ``f`` (filters and cursor), what was acknowledged and what the doors closed."""
    operator = role_allows(session.role, "operator")
    params = query_of(f)
    comments = "".join(f'<option value="{h(c)}"></option>' for c in STANDARD_COMMENTS)
    bulk = ""
    if operator:
        bulk = ('<form id="bulk-ack" method="post" action="/alarms/acknowledge" class="bulk">'
                f'{csrf_field(session)}<input type="hidden" name="next" value="{h(back_to(params))}">'
                '<label>所选告警的处置说明 Comment for the chosen alarms '
                '<input name="comment" list="ack-comments" required maxlength="500"></label> '
                '<button type="submit" data-action="acknowledge_chosen">确认所选 Acknowledge chosen</button>'
                '</form>')
    pick_all = ('<input type="checkbox" id="pick-all" aria-label="全选 Choose all">' if operator else "")
    rows = "".join(queue_row(a, i, session, back_to(params)) for i, a in enumerate(open_alarms))
    filtered = " (筛选 filtered)" if f.narrowed or f.dated else ""
    shown_note = (f'<p class="muted" id="queue-note">显示 Showing <span id="queue-shown">{len(open_alarms)}</span> / '
                  f'<span data-open-alarms>{total_open}</span>{filtered}</p>')
    head = "".join(f"<th>{c}</th>" for c in ("时间 Time", "门 Door", "序号 Seq", "优先级 Priority", "告警 Alarm",
                                             "详情 Detail", "", ""))
    nav = paging(f, next_before, len(open_alarms))
    open_table = (f'<table class="alarms" id="open-alarms" data-last-id="{last_id}" '
                  f'data-query="{h(urlencode(params))}">'
                  f'<thead><tr><th>{pick_all}</th>{head}</tr></thead><tbody>{rows}</tbody></table>'
                  f'<p class="muted" id="no-open-alarms"{" hidden" if open_alarms else ""}>'
                  '无待处理告警 No open alarms.</p>')
    form = search_pages.search_form("/alarms", f, doors, types=alarm_types(), form_id="alarm-filter")
    done_rows = "".join(
        f'<tr class="acknowledged" data-site="{h(a.site)}" data-door="{h(a.door)}" data-epoch="{a.epoch}" '
        f'data-seq="{a.seq}" data-type="{h(a.type)}">'
        f'<td title="{h(a.ts)}">{h(short_time(a.ts))}</td><td>{h(a.site)}/{h(a.door)}</td><td>{_seq_text(a)}</td>'
        f'<td>{h(label(a.type))}</td><td>{h(a.summary)}</td>'
        f'<td data-field="by">{h(a.acknowledged_by)}</td><td data-field="at">{h(a.acknowledged_at)}</td>'
        f'<td data-field="comment">{h(a.comment)}</td></tr>' for a in done)
    closed_rows = "".join(
        f'<tr class="closed" data-site="{h(a.site)}" data-door="{h(a.door)}" data-epoch="{a.epoch}" '
        f'data-seq="{a.seq}" data-type="{h(a.type)}" data-closed-by="{a.closed_by}">'
        f'<td title="{h(a.ts)}">{h(short_time(a.ts))}</td><td>{h(a.site)}/{h(a.door)}</td><td>{_seq_text(a)}</td>'
        f'<td>{h(label(a.type))}</td><td>{h(a.summary)}</td>'
        f'<td data-field="closed">{_closed_text(a)}</td><td data-field="at">{h(a.closed_at)}</td></tr>'
        for a in closed)
    body = (f'<h2>待处理告警 Open alarms (<span data-open-alarms>{total_open}</span>)</h2>'
            f'{form}{bulk}<datalist id="ack-comments">{comments}</datalist>'
            f'{shown_note}{nav}<div class="scroll">{open_table}</div>{nav}'
            f'<h2>已确认 Acknowledged</h2><p><a href="/alarms.csv">导出 CSV export</a></p>'
            '<div class="scroll"><table class="alarms" id="acknowledged"><thead><tr><th>时间 Time</th><th>门 Door</th>'
            '<th>序号 Seq</th><th>告警 Alarm</th><th>详情 Detail</th><th>确认人 By</th><th>确认时间 At</th>'
            f'<th>说明 Comment</th></tr></thead><tbody>{done_rows}</tbody></table></div>'
            '<h2>门已报告结束 Closed by the door</h2>'
            '<div class="scroll"><table class="alarms" id="closed-by-door"><thead><tr><th>时间 Time</th>'
            '<th>门 Door</th><th>序号 Seq</th><th>告警 Alarm</th><th>详情 Detail</th><th>关闭 Closed</th>'
            '<th>时间 At</th></tr></thead>'
            f'<tbody>{closed_rows}</tbody></table></div>')
    return pages.layout("告警 Alarms", body, session, active="/alarms", scripts=("station.js",),
                        open_alarms=total_open)


def _closed_text(a: Alarm) -> str:
    if a.closed_by == a.seq:
        return "状态事件，无需确认 a state event: nothing to acknowledge"
    return f"由门的 #{a.closed_by} 关闭 closed by the door's #{a.closed_by}"


def around_page(alarm: Alarm | None, site: str, door: str, epoch: int, seq: int, rows, span: int,
                session: Session) -> str:
    """The door's events from ``seq - span`` to ``seq + span`` (same chain epoch), the alarm marked."""
    body_rows = "".join(pages.event_row(r.site, r.door, r.shown, r.epoch).replace(
        "<tr", '<tr aria-current="true" id="the-alarm"', 1) if r.shown.get("seq") == seq
        else pages.event_row(r.site, r.door, r.shown, r.epoch) for r in rows)
    what = (f'{h(label(alarm.type))}: {h(alarm.summary)}' if alarm
            else "此序号不是告警 This seq is not an archived alarm")
    register = urlencode({"site": site, "door": door, "date": alarm.ts[:10] if alarm and len(alarm.ts) >= 10 else ""})
    body = (f'<h2>{h(site)}/{h(door)} #{seq} 前后事件 Events around</h2><p>{what}</p>'
            f'<p class="muted">#{max(seq - span, 1)} – #{seq + span}'
            f'{f" (第 {epoch} 段 epoch {epoch})" if epoch > 1 else ""} · '
            f'<a href="/register?{h(register)}">当天登记簿 That day\'s register</a> · '
            '<a href="/alarms">返回告警 Back to the alarms</a></p>'
            f'<div class="scroll">{pages.events_table(body_rows, "around")}</div>')
    return pages.layout(f"{door} #{seq}", body, session, active="/alarms")


def tile_alarm_text(types: dict[str, int]) -> str:
    """Which open alarms a door has, most urgent first (empty when none)."""
    if not types:
        return ""
    order = sorted(types, key=lambda t: (PRIORITY.get(t, 9), t))
    return "告警 ALARM: " + ", ".join(label(t) + (f" ×{types[t]}" if types[t] > 1 else "") for t in order)
