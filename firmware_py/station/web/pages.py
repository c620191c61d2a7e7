"""The station's pages as HTML, made on the server (no front-end build step).

Every value from the archive or the request goes through :func:`h` (HTML escaping). The page's
testing contract (DESIGN.md "The supervision station") lives here: ``data-site``, ``data-door``,
``data-seq``, ``data-type`` on event rows (and ``data-epoch``, the door's chain epoch);
``data-site``, ``data-door``, ``data-online`` on door tiles (and ``data-problems``, how many
messages of the door were refused or kept as conflicting copies; ``data-alarm``, whether it has an
open alarm); ``data-action`` on controls that change state; the login form's ``username`` and
``password``; the count of open alarms in ``[data-open-alarms]`` and the title. The alarm queue's
HTML is in :mod:`.alarm_page`.

What a door stored reaches these functions as the page reads it (:mod:`.shown`): text where text is
expected, ``?`` where the door wrote something else.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote
from zoneinfo import ZoneInfo

from firmware_py.core.event_line import DIRECTION_LABELS, REASON_LABELS, TYPE_LABELS
from firmware_py.station.accounts.accounts import Session, role_allows
from firmware_py.station.accounts.audit import AuditEntry
from firmware_py.station.archive.chain import ChainResult
from firmware_py.station.web import shown, times
from firmware_py.station.web.problems import DoorProblems, Problem

TITLE = "门禁监控站 Supervision station"


def h(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def type_label(t: str | None) -> str:
    return TYPE_LABELS.get(t or "", t or "")


def layout(title: str, body: str, session: Session | None, *, active: str = "", scripts: tuple[str, ...] = (),
           open_alarms: int | None = None) -> str:
    """The page around ``body``. With a session: the menu, the count of open alarms (``open_alarms``,
    or filled in by the live stream) in the menu and the title, the live region that announces new
    alarms and the switch for their sound (:file:`static/station.js` on every page)."""
    nav = alarm_bar = ""
    if session:
        count = "" if open_alarms is None else str(open_alarms)
        links = [("/", "总览 Overview"), ("/events", "实时 Live events"),
                 ("/alarms", f'告警 Alarms <span class="count" data-open-alarms{"" if open_alarms else " hidden"}>'
                             f'{count}</span>'),
                 ("/register", "登记簿 Register")]
        if role_allows(session.role, "admin"):
            links += [("/accounts", "账号 Accounts"), ("/roster", "名单 Roster"), ("/audit", "审计 Audit"),
                      ("/problems", "异常消息 Rejects & conflicts")]
        items = "".join(f'<a href="{href}"{" class=active" if href == active else ""}>{label}</a>'
                        for href, label in links)
        nav = (f'<nav>{items}<span class="who">{h(session.name)} ({h(session.role)})</span>'
               f'<form method="post" action="/logout" class="inline">{csrf_field(session)}'
               f'<button type="submit">退出 Log out</button></form></nav>')
        alarm_bar = ('<div class="alarm-bar"><button type="button" id="sound-switch" aria-pressed="false">'
                     '开启告警声音 Enable alarm sound</button>'
                     '<span id="stream-lost" class="error" role="alert" hidden></span></div>'
                     '<div id="alarm-news" class="sr-only" aria-live="assertive" aria-atomic="true"></div>')
        scripts = tuple(dict.fromkeys((*scripts, "station.js")))
    csrf_meta = f'<meta name="csrf-token" content="{h(session.csrf)}">' if session else ""
    js = "".join(f'<script src="/static/{s}" defer></script>' for s in scripts)
    counted = f"({open_alarms}) " if open_alarms else ""
    return (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">{csrf_meta}'
            f'<title data-title="{h(title)} — {TITLE}">{counted}{h(title)} — {TITLE}</title>'
            f'<link rel="stylesheet" href="/static/station.css">{js}</head>'
            f'<body><header><h1>{TITLE}</h1>{nav}{alarm_bar}</header><main>{body}</main></body></html>')


def csrf_field(session: Session) -> str:
    return f'<input type="hidden" name="csrf" value="{h(session.csrf)}">'


# ---------------------------------------------------------------- login

def login_page(error: str = "", next_path: str = "/", username: str = "") -> str:
    err = f'<p class="error" role="alert">{h(error)}</p>' if error else ""
    body = (f'<section class="login"><h2>登录 Log in</h2>{err}'
            f'<form method="post" action="/login"><input type="hidden" name="next" value="{h(next_path)}">'
            '<label>用户名 User name '
            f'<input name="username" autocomplete="username" required value="{h(username)}"></label>'
            '<label>密码 Password '
            '<input name="password" type="password" autocomplete="current-password" required></label>'
            f'<button type="submit">登录 Log in</button></form></section>')
    return layout("登录 Log in", body, None)


# ---------------------------------------------------------------- overview

def tile_fields(status: dict | None, last: dict | None, chain: ChainResult) -> dict[str, str]:
    """The tile's texts from the door's status (any JSON: a field of the wrong type is ``?``), its
    last event as the page reads it and its chain."""
    s = status if isinstance(status, dict) else {}
    lockdown = s.get("lockdown")
    return {
        "online": "在线 online" if s.get("online") is True else "离线 OFFLINE",
        "lock": shown.label(s.get("lock"), {"locked": "已锁 locked", "released": "已开锁 released"}),
        "door": shown.label(s.get("door"), {"closed": "关 closed", "open": "开 open"}),
        "lockdown": ("封锁 LOCKDOWN" if lockdown is True else "正常 normal" if lockdown in (False, None)
                     else shown.UNKNOWN),
        "occupancy": shown.count(s.get("occupancy")),
        "faults": shown.faults(s.get("faults")) or "无 none",
        "queued": _backlog(s, last),
        "last_event": _last_event_text(last),
        "chain": chain.text(),
    }


def _backlog(status: dict, last: dict | None) -> str:
    """What the door still has to send, from its latest status: none once the station holds the
    door's events up to the head the status announced (``last_seq``), the status's count otherwise."""
    queued, head = status.get("queued"), status.get("last_seq")
    seq = (last or {}).get("seq")
    if (isinstance(head, int) and not isinstance(head, bool) and isinstance(seq, int) and seq >= head
            and isinstance(queued, int)):
        return "0"
    return shown.count(queued)


def _last_event_text(last: dict | None) -> str:
    if not last:
        return "—"
    if last.get("unreadable"):
        return f"? {last['unreadable']}"
    return f'{(last["ts"] or "")[11:19]} #{last["seq"] if last["seq"] is not None else "?"} ' \
           f'{type_label(last["type"])}'


FIELD_LABELS = (("lock", "锁 Lock"), ("door", "门 Door"), ("lockdown", "封锁 Lockdown"), ("occupancy", "在场 Inside"),
                ("faults", "故障 Faults"), ("last_event", "最近事件 Last event"), ("queued", "待发 Backlog (queued)"),
                ("chain", "链校验 Chain"))


def inside_list(site: str, door: str, people: list[dict] | None, session: Session) -> str:
    """Who is inside (:func:`.shown.people_inside`), each with the operator's revoke control."""
    if people is None:
        return '<p class="muted">? 未知 unknown</p>'
    if not people:
        return '<p class="muted">无人 nobody inside</p>'
    operator = role_allows(session.role, "operator")
    items = []
    for p in people:
        pid = p["person_id"]
        control = ""
        if operator and pid:
            control = (f'<form method="post" action="/doors/{q(site)}/{q(door)}/revoke" class="inline revoke">'
                       f'{csrf_field(session)}<input type="hidden" name="person_id" value="{h(pid)}">'
                       f'<input name="reason" placeholder="撤销原因 reason" required maxlength="256" '
                       f'aria-label="撤销 {h(pid)} 的原因 Reason to revoke {h(pid)}">'
                       f'<button type="submit" data-action="revoke">撤销授权 Revoke</button></form>')
        items.append(f'<li data-person="{h(pid or shown.UNKNOWN)}"><span class="person">{h(pid or shown.UNKNOWN)} '
                     f'{h(p["name"])}</span> <span class="since">自 since {h(p["since"])}</span>{control}</li>')
    return f'<ul class="inside">{"".join(items)}</ul>'


def q(part: str) -> str:
    return quote(part, safe="")


def tile(t: dict, session: Session) -> str:
    site, door = t["site"], t["door"]
    rows = "".join(f'<tr><th>{label}</th><td data-field="{key}">{h(t["fields"][key])}</td></tr>'
                   for key, label in FIELD_LABELS)
    controls = ""
    if role_allows(session.role, "operator"):
        controls = "".join(
            f'<form method="post" action="/doors/{q(site)}/{q(door)}/{action}" class="inline">{csrf_field(session)}'
            f'<button type="submit" data-action="{action}">{label}</button></form>'
            for action, label in (("lockdown", "封锁 Lock down"), ("release_lockdown", "解除封锁 Release lockdown")))
        controls = f'<div class="controls">{controls}</div>'
    online = "true" if t["online"] else "false"
    problems = t.get("problems", 0)
    badge = problems_badge(site, door, problems, session)
    alarm = t.get("alarm_text", "")
    return (f'<article class="tile" data-site="{h(site)}" data-door="{h(door)}" data-online="{online}" '
            f'data-problems="{problems}" data-alarm="{"true" if alarm else "false"}">'
            f'<h3>{h(door)} <span class="badge" data-field="online">{h(t["fields"]["online"])}</span> {badge}</h3>'
            f'<p class="alarm-line"><a data-field="alarm" href="/alarms?site={q(site)}&amp;door={q(door)}"'
            f'{"" if alarm else " hidden"}>{h(alarm)}</a></p>'
            f'<p class="command-state" data-command-state role="status"></p>'
            f'<table>{rows}</table><h4>在场人员 Who is inside</h4><div class="inside-list">{t["inside_html"]}</div>'
            f'{controls}</article>')


def problems_badge(site: str, door: str, count: int, session: Session) -> str:
    """How many of the door's messages were refused or kept as conflicting copies (hidden when none);
    for an admin, a link to them."""
    hidden, text = ("" if count else " hidden"), f"{count} 异常 problems"
    if role_allows(session.role, "admin"):
        return (f'<a class="badge problems" data-problems-badge href="/problems?site={q(site)}&amp;door={q(door)}"'
                f'{hidden}>{text}</a>')
    return f'<span class="badge problems" data-problems-badge{hidden}>{text}</span>'


def overview(tiles: list[dict], session: Session, broker_connected: bool, last_id: int,
             open_alarms: int | None = None) -> str:
    by_site: dict[str, list[dict]] = {}
    for t in tiles:
        by_site.setdefault(t["site"], []).append(t)
    link = "已连接 connected" if broker_connected else "未连接 NOT connected"
    sections = "".join(f'<section class="site" data-site="{h(site)}"><h2>场所 Site {h(site)}</h2>'
                       f'<div class="tiles">{"".join(tile(t, session) for t in ts)}</div></section>'
                       for site, ts in by_site.items())
    if not sections:
        sections = '<p class="muted">尚无门禁上报 No door has reported yet.</p>'
    body = (f'<p class="broker" id="broker" data-connected="{"true" if broker_connected else "false"}">'
            f'消息代理 Broker: {link}</p><div id="overview" data-last-id="{last_id}">{sections}</div>')
    return layout("总览 Overview", body, session, active="/", scripts=("station.js",), open_alarms=open_alarms)


# ---------------------------------------------------------------- events

def event_cells(event: dict) -> list[str]:
    """The cells of an event row, from the event as the page reads it (:func:`.shown.event`)."""
    person = event.get("person") or {}
    cred = event.get("credential") or {}
    seq = event.get("seq")
    return [
        times.short(event.get("ts") or ""),
        f'{event.get("site") or ""}/{event.get("door") or ""}',
        f'#{seq}' if seq is not None else "",
        f'? {event["unreadable"]}' if event.get("unreadable") else type_label(event.get("type")),
        DIRECTION_LABELS.get(event.get("direction") or "", event.get("direction") or ""),
        " ".join(x for x in (person.get("person_id", ""), person.get("name", "")) if x),
        " ".join(x for x in (cred.get("kind", ""), cred.get("masked", "")) if x),
        REASON_LABELS.get(event.get("reason") or "", event.get("reason") or ""),
    ]


EVENT_HEADERS = ("时间 Time", "门 Door", "序号 Seq", "事件 Event", "方向 Direction", "人员 Person", "证件 Credential",
                 "原因 Reason")


def event_row(site: str, door: str, event: dict, epoch: int = 1) -> str:
    cells = f'<td class="time">{times.time_html(event.get("ts") or "")}</td>' + "".join(
        f"<td>{h(c)}</td>" for c in event_cells(event)[1:])
    cls = f' class="{h(event.get("category"))}"' if event.get("category") else ""
    return (f'<tr{cls} data-site="{h(site)}" data-door="{h(door)}" data-epoch="{h(epoch)}" '
            f'data-seq="{h(event.get("seq"))}" data-type="{h(event.get("type"))}">{cells}</tr>')


def events_table(rows: str, table_id: str = "", extra: str = "") -> str:
    head = "".join(f"<th>{c}</th>" for c in EVENT_HEADERS)
    ident = f' id="{table_id}"' if table_id else ""
    return f'<table class="events"{ident}{extra}><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def events_page(recent, session: Session, last_id: int, above: str = "", below: str = "") -> str:
    """The live list (newest first); ``above`` and ``below`` it the search form and the way back
    (:mod:`.search_pages`)."""
    rows = "".join(event_row(r.site, r.door, r.shown, r.epoch) for r in reversed(recent))
    body = (f'<h2>实时事件 Live events</h2>{above}'
            '<p class="muted" id="stream-state" role="status" aria-live="polite">连接中 connecting…</p>'
            + events_table(rows, "stream", f' data-last-id="{last_id}"') + below)
    return layout("实时 Live events", body, session, active="/events", scripts=("station.js",))


# ---------------------------------------------------------------- alarms (the queue: :mod:`.alarm_page`)

def _seq_text(epoch: int, seq: int) -> str:
    """``#7``, or ``#7 (epoch 2)`` for an event of a door's later chain epoch."""
    return f"#{seq}" + (f" (第 {epoch} 段 epoch {epoch})" if epoch > 1 else "")




# ---------------------------------------------------------------- audit

def audit_page(entries: list[AuditEntry], session: Session, tz: ZoneInfo | None = None) -> str:
    """The audit trail, every time in the station's zone ``tz``, each detail as ``field: value`` lines."""
    rows = "".join(f'<tr data-id="{e.id}"><td class="time">{times.time_html(e.at, tz)}</td><td>{h(e.who)}</td>'
                   f"<td>{h(e.address)}</td><td>{h(e.action)}</td>"
                   f'<td class="detail">{_audit_detail(e.detail)}</td><td>{h(e.result)}</td></tr>' for e in entries)
    body = ('<h2>审计记录 Audit trail</h2><table class="audit"><thead><tr><th>时间 At</th><th>账号 Who</th>'
            '<th>地址 Address</th><th>操作 What</th><th>参数 Detail</th><th>结果 Result</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")
    return layout("审计 Audit", body, session, active="/audit")


def _audit_detail(detail: dict) -> str:
    """A request's fields as ``name: value`` lines (a nested value as compact JSON)."""
    import json

    lines = []
    for key, value in detail.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        lines.append(f'<span class="field"><b>{h(key)}</b>: {h(text)}</span>')
    return "<br>".join(lines)


# ---------------------------------------------------------------- rejects and conflicts

def _problem_rows(items: list[Problem], what: str) -> str:
    head = (f'<thead><tr><th>编号 Id</th><th>收到 Received</th><th>主题 Topic</th><th>{what}</th>'
            '<th>大小 Bytes</th><th>内容 Payload (masked)</th></tr></thead>')
    rows = "".join(f'<tr data-id="{p.id}"><td>{p.id}</td><td>{h(p.received_at)}</td><td>{h(p.topic)}</td>'
                   f'<td>{h(p.what)}</td><td>{p.size}</td><td><code>{h(p.payload)}</code></td></tr>' for p in items)
    return f'<table class="problems">{head}<tbody>{rows}</tbody></table>'


def problems_page(doors: list[DoorProblems], params: dict, per_door: int, session: Session) -> str:
    """Each door's refused messages and conflicting copies, newest first (admins only)."""
    inputs = "".join(f'<label>{label} <input name="{name}" value="{h(params.get(name, ""))}"></label>'
                     for name, label in (("site", "场所 Site"), ("door", "门 Door")))
    sections = "".join(
        f'<section class="door-problems" data-site="{h(d.site)}" data-door="{h(d.door)}" '
        f'data-rejects="{d.reject_count}" data-conflicts="{d.conflict_count}">'
        f'<h3>{h(d.site)}/{h(d.door)}</h3>'
        f'<h4>被拒消息 Refused messages ({d.reject_count}; 最新 newest {min(per_door, d.reject_count)})</h4>'
        + _problem_rows(d.rejects, "原因 Reason")
        + f'<h4>冲突副本 Conflicting copies ({d.conflict_count}; 最新 newest {min(per_door, d.conflict_count)})</h4>'
        + _problem_rows(d.conflicts, "序号 Seq") + "</section>" for d in doors)
    if not sections:
        sections = '<p class="muted">无 None: every message was taken.</p>'
    body = ('<h2>异常消息 Refused messages and conflicting copies</h2>'
            f'<form method="get" action="/problems" class="filter">{inputs}<button type="submit">查询 Show</button>'
            f'</form>{sections}')
    return layout("异常消息 Rejects & conflicts", body, session, active="/problems")


def message_page(title: str, text: str, session: Session | None) -> str:
    return layout(title, f'<h2>{h(title)}</h2><p class="error">{h(text)}</p><p><a href="/">返回 Back</a></p>', session)
