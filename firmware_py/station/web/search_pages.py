"""The register and the event search as HTML: the filter form, pages with an "earlier" link, the printout.

Rows keep the page's testing contract (``data-site``, ``data-door``, ``data-seq``, ``data-type``)
and add ``data-id``, the archive's id of the row: the ``before`` cursor of the next page
(:mod:`.search`). Times are shown short and local (:mod:`.times`), the full time as a tooltip.
"""

from __future__ import annotations

from datetime import date, datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from firmware_py.core.event_line import DIRECTION_LABELS, REASON_LABELS, TYPE_LABELS
from firmware_py.core.events import TYPES
from firmware_py.core.register import REGISTER_TYPES
from firmware_py.station.accounts.accounts import Session
from firmware_py.station.archive.chain import ChainResult
from firmware_py.station.web import times
from firmware_py.station.web.pages import _seq_text, event_cells, events_table, h, layout, type_label
from firmware_py.station.web.queries import DoorRow, StreamRow
from firmware_py.station.web.search import Filters

CATEGORY_LABELS = {"access": "全部通行 all access", "alarm": "全部告警 all alarms", "system": "全部系统 all system"}


def _options(choices: list[tuple[str, str]], chosen: str) -> str:
    return "".join(f'<option value="{h(v)}"{" selected" if v == chosen else ""}>{h(label)}</option>'
                   for v, label in choices)


def type_choices(register: bool) -> list[tuple[str, str]]:
    if register:
        return [(t, TYPE_LABELS.get(t, t)) for t in REGISTER_TYPES]
    out = []
    for category, types in TYPES.items():
        out.append((category, CATEGORY_LABELS[category]))
        out += [(t, "  " + TYPE_LABELS.get(t, t)) for t in types]
    return out


def search_form(action: str, f: Filters, doors: list[DoorRow], *, register: bool = False,
                types: list[tuple[str, str]] | None = None, form_id: str = "") -> str:
    """The filters: dates, site and door from the archive's doors, event type with labels (``types``,
    else the register's or every type), person. Undated filters (the alarm queue) leave the dates empty."""
    sites = sorted({d.site for d in doors} | ({f.site} if f.site else set()))
    door_names = sorted({(d.site, d.door) for d in doors if not f.site or d.site == f.site})
    if f.door and not any(door == f.door for _, door in door_names):
        door_names.append((f.site, f.door))
    site_select = _options([("", "全部 all")] + [(s, s) for s in sites], f.site)
    door_select = _options([("", "全部 all")] + [(d, f"{s}/{d}" if s else d) for s, d in door_names], f.door)
    type_select = _options([("", "全部 all")] + (types if types is not None else type_choices(register)), f.type)
    first, last = (f.first.isoformat(), f.last.isoformat()) if f.dated else ("", "")
    named = f' id="{h(form_id)}"' if form_id else ""
    return (f'<form method="get" action="{action}" class="filter search" role="search"{named}>'
            f'<label>从 From <input name="from" type="date" value="{first}"></label>'
            f'<label>到 To <input name="to" type="date" value="{last}"></label>'
            f'<label>场所 Site <select name="site">{site_select}</select></label>'
            f'<label>门 Door <select name="door">{door_select}</select></label>'
            f'<label>事件 Event <select name="type">{type_select}</select></label>'
            f'<label>人员 Person <input name="q" type="search" value="{h(f.q)}" maxlength="64" '
            'placeholder="编号、姓名或单位 ID, name or organisation"></label>'
            + (f'<input type="hidden" name="person" value="{h(f.person)}">' if f.person else "")
            + '<button type="submit">查询 Search</button></form>')


def _link(path: str, params: dict) -> str:
    return h(f"{path}?{urlencode(params)}" if params else path)


def paging(path: str, f: Filters, next_before: int | None, shown: int, *, live: bool = False) -> str:
    """How many rows this page shows, the link to the earlier ones and back to the newest; ``live``:
    both the link and the "no earlier" note, one hidden, for a page whose rows change live."""
    parts = [f'<span class="count">本页 {shown} 条 rows on this page</span>']
    earlier = {**f.params(), "before": next_before} if next_before is not None else f.params()
    link = (f'<a rel="next" data-page="earlier"{" hidden" if next_before is None else ""} '
            f'href="{_link(path, earlier)}">← 更早 Earlier</a>')
    first = (f'<span class="muted" data-page="first"{" hidden" if next_before is not None else ""}>'
             '已到最早 no earlier events</span>')
    if live:
        parts += [link, first]
    else:
        parts.append(link if next_before is not None else first)
    if f.before is not None:
        parts.append(f'<a data-page="newest" href="{_link(path, f.params())}">最新 Newest →</a>')
    return f'<nav class="paging" aria-label="分页 pages">{" · ".join(parts)}</nav>'
# ---------------------------------------------------------------- register

def register_rows_html(rows: list[dict], tz: ZoneInfo | None = None, today: date | None = None) -> str:
    out = []
    for r in rows:
        cells = [f'{r["site"]}/{r["door"]}', _seq_text(r["epoch"], r["seq"]), type_label(r["decision"]),
                 DIRECTION_LABELS.get(r["direction"], r["direction"]), f'{r["person_id"]} {r["name"]}'.strip(),
                 f'{r["credential_kind"]} {r["credential"]}'.strip(), REASON_LABELS.get(r["reason"], r["reason"])]
        tds = f'<td class="time">{times.time_html(r["time"], tz, today)}</td>' + "".join(f"<td>{h(c)}</td>"
                                                                                      for c in cells)
        out.append(f'<tr data-id="{h(r.get("id", ""))}" data-site="{h(r["site"])}" data-door="{h(r["door"])}" '
                   f'data-epoch="{h(r["epoch"])}" data-seq="{h(r["seq"])}" data-type="{h(r["decision"])}">{tds}</tr>')
    return "".join(out)


def _span(f: Filters) -> str:
    return f.first.isoformat() if f.first == f.last else f"{f.first.isoformat()} – {f.last.isoformat()}"


def register_page(f: Filters, rows: list[dict], next_before: int | None, doors: list[DoorRow],
                  charts: tuple[str, str] | None, session: Session, tz: ZoneInfo, today: date) -> str:
    """One page of the register (rows in time order); ``charts`` (entries per hour, denials by
    reason as SVG) on the newest page of one day."""
    query = f.params()
    charts_html = ""
    if charts:
        charts_html = (f'<section class="charts"><div><h3>每小时进入 Entries per hour</h3>{charts[0]}</div>'
                       f'<div><h3>拒绝原因 Denials by reason</h3>{charts[1]}</div></section>')
    body = (f'<h2>登记簿 Register {h(_span(f))}</h2>{search_form("/register", f, doors, register=True)}'
            f'<p class="exports"><a href="{_link("/register.csv", query)}" download>导出 CSV export</a> · '
            f'<a href="{_link("/register.csv", {**query, "lang": "zh"})}" download>导出中文 CSV (中文表头)</a> · '
            f'<a href="{_link("/register/print", query)}">打印版 Printable page</a></p>'
            + charts_html + paging("/register", f, next_before, len(rows))
            + events_table(register_rows_html(rows, tz, today), "register")
            + paging("/register", f, next_before, len(rows)))
    return layout("登记簿 Register", body, session, active="/register")


def register_print(f: Filters, rows: list[dict], chains: list[tuple[str, str, ChainResult]], digest: str,
                   csv_bytes: int, generated: datetime, session: Session, tz: ZoneInfo) -> str:
    chain_rows = "".join(f'<tr data-site="{h(s)}" data-door="{h(d)}" data-chain-ok="{"true" if c.ok else "false"}">'
                         f'<td>{h(s)}/{h(d)}</td><td>{h(c.text())}</td></tr>' for s, d, c in chains)
    scope = ", ".join(f"{k}={v}" for k, v in f.params().items())
    # printed on paper, a row names its day: the date is shown on every row
    body = (f'<section class="print"><h2>出入登记簿 Entry register — {h(_span(f))}</h2>'
            f'<p>范围 Scope: {h(scope)}</p><p>生成 Generated {h(times.full(generated.isoformat(), tz))} '
            f'by {h(session.name)} · {len(rows)} 条 rows</p>'
            f'<h3>链校验 Chain verification</h3><table class="chains">{chain_rows}</table>'
            f'<p>CSV SHA-256 (<span id="csv-bytes">{csv_bytes}</span> bytes): <code id="csv-digest">{digest}</code></p>'
            + events_table(register_rows_html(rows, tz, date.min), "register")
            + signatures(session) + "</section>")
    return layout("登记簿打印 Printable register", body, session)


def signatures(session: Session) -> str:
    """The signature block of a paper register: who prepared it, who checked it, each with a date."""
    lines = (("prepared", "制表人 Prepared by", session.name), ("checked", "审核人 Checked by", ""))
    cells = "".join(f'<div class="signature" data-signature="{key}"><span>{label}：</span>'
                    f'<span class="line">{h(name)}</span><span>签名 Signature：</span><span class="line"></span>'
                    f'<span>日期 Date：</span><span class="line short"></span></div>' for key, label, name in lines)
    return f'<section class="signatures" aria-label="签字 Signatures">{cells}</section>'


# ---------------------------------------------------------------- events (searched, not live)

def event_rows_html(rows: list[StreamRow], tz: ZoneInfo, today: date) -> str:
    out = []
    for r in rows:
        e = r.shown
        cells = event_cells(e)
        tds = f'<td class="time">{times.time_html(e.get("ts"), tz, today)}</td>' + "".join(
            f"<td>{h(c)}</td>" for c in cells[1:])
        cls = f' class="{h(e.get("category"))}"' if e.get("category") else ""
        out.append(f'<tr{cls} data-id="{r.id}" data-site="{h(r.site)}" data-door="{h(r.door)}" '
                   f'data-epoch="{h(r.epoch)}" data-seq="{h(e.get("seq"))}" data-type="{h(e.get("type"))}">{tds}</tr>')
    return "".join(out)


def events_search_page(f: Filters, rows: list[StreamRow], next_before: int | None, doors: list[DoorRow],
                       session: Session, tz: ZoneInfo, today: date) -> str:
    """``/events`` with filters or a cursor: one page of the archive, newest first (not live)."""
    body = (f'<h2>事件查询 Events {h(_span(f))}</h2>{search_form("/events", f, doors, register=False)}'
            '<p class="muted">查询结果，不实时更新 Search results (not live) · <a href="/events">实时 Live</a></p>'
            + paging("/events", f, next_before, len(rows))
            + events_table(event_rows_html(rows, tz, today), "events-found")
            + paging("/events", f, next_before, len(rows)))
    return layout("事件查询 Events", body, session, active="/events")


def events_live_extras(f: Filters, doors: list[DoorRow], oldest: int | None) -> tuple[str, str]:
    """Above the live list: the search form; below it, the way back to earlier events."""
    form = search_form("/events", f, doors, register=False)
    earlier = ""
    if oldest is not None:
        earlier = (f'<nav class="paging"><a rel="next" data-page="earlier" '
                   f'href="{_link("/events", {**f.params(), "before": oldest})}">← 更早 Earlier</a></nav>')
    return form, earlier
