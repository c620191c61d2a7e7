"""The HTML of ``/roster`` (:mod:`.roster_page`): the keys, the upload, what it changes, and each door's roster.

Persons are shown by id, name and masked ID number only (the rows never hold the number).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from firmware_py.station.archive import masking
from firmware_py.station.archive.store import EventSearch
from firmware_py.station.web import queries, times
from firmware_py.station.web.pages import csrf_field, h, layout

ROSTER_TYPES = ("roster_applied", "roster_rejected")
EVENTS_READ = 5000  # the newest roster events read for the doors' column
LISTED = 200  # persons listed per kind of change


@dataclass(frozen=True)
class DoorRoster:
    site: str
    door: str
    version: int | None  # from the door's status (None: not reported)
    applied: dict | None  # the newest roster_applied event
    rejected: dict | None  # the newest roster_rejected event, when newer than the newest applied


def door_rosters(station) -> list[DoorRoster]:
    """Each door's applied version and when, and its refusal of a newer bundle with the reason."""
    now = station.now()
    search = EventSearch(start=datetime(2000, 1, 1, tzinfo=now.tzinfo), end=now + timedelta(days=2),
                         types=ROSTER_TYPES)
    newest: dict[tuple[str, str, str], tuple[int, dict]] = {}
    for n, (_id, site, door, payload, _epoch) in enumerate(station.store.search_events(search, None, EVENTS_READ)):
        event = queries.parse_payload(payload)
        newest.setdefault((site, door, str(event.get("type"))), (n, event))  # newest first
    out = []
    for d in queries.doors(station.store):
        status = d.status if isinstance(d.status, dict) else {}
        version = status.get("roster_version")
        applied = newest.get((d.site, d.door, "roster_applied"))
        rejected = newest.get((d.site, d.door, "roster_rejected"))
        if rejected and applied and applied[0] < rejected[0]:  # applied a bundle since it rejected one
            rejected = None
        out.append(DoorRoster(d.site, d.door, version if isinstance(version, int) and not isinstance(version, bool)
                              else None, applied and applied[1], rejected and rejected[1]))
    return out


def roster_html(ctx, *, missing: str | None, site: str, published, doors: list[DoorRoster], upload=None,
                refusal: str | None = None, done=None) -> str:
    st, session = ctx.station, ctx.session
    today = st.now().date()
    parts = ["<h2>名单发布 Roster</h2>"]
    if missing:
        parts.append(f'<section class="error" data-roster-keys="missing" role="alert"><p>未配置名单签名密钥 '
                     f'The station cannot publish a roster yet: {h(missing)}</p>'
                     '<p>Make the station signing key and the site roster key and name them in the station\'s '
                     'configuration, then restart the station (docs/commissioning.md, §5 "Roster keys"):</p>'
                     '<pre>[roster]\nsigning_key = "/etc/accessctl/roster-signing.key"\n'
                     'site_key = "/etc/accessctl/site-roster.key"\nsite = "SITE"\n\n'
                     '[roster.schedule.office]\nmon = ["08:30-17:30"]</pre></section>')
    if published:
        parts.append(f'<p data-published-version="{published.version}">已发布 Published: version '
                     f'<strong>{published.version}</strong> for site {h(published.site)}, {published.count} persons '
                     f'in {published.chunks} chunk(s), by {h(published.published_by)} '
                     f'{times.time_html(published.published_at, st.tz, today)}</p>')
    elif site:
        parts.append(f'<p data-published-version="0">本站尚未为 {h(site)} 发布名单 This station has not published '
                     f'a roster for site {h(site)} yet.</p>')
    if done is not None:
        b = done.bundle
        parts.append(f'<section class="notice" role="status" data-published="{b.version}" '
                     f'data-chunks="{len(b.chunks)}"><p>已发布 Published version <strong>{b.version}</strong>: '
                     f'{b.count} persons, {len(b.chunks)} chunk(s), {b.wire_bytes} bytes signed, retained on '
                     f'<code>{h(done.topic)}</code>; valid until {h(b.valid_until.isoformat(timespec="seconds"))}'
                     f'{f"; replaces version {done.previous}" if done.previous else ""}.</p></section>')
    if refusal:
        parts.append(f'<section class="error" role="alert" data-refused="true"><p>名单有误，未发布 '
                     f'The file was refused; nothing was published:</p><pre>{h(refusal)}</pre></section>')
    if upload is not None:
        parts.append(_diff_html(upload, session))
    if not missing:
        parts.append(f'<h3>上传名单 Upload a roster CSV</h3><form method="post" action="/roster/check" '
                     f'enctype="multipart/form-data" class="filter">{csrf_field(session)}'
                     '<label>名单文件 File <input type="file" name="roster" accept=".csv,text/csv" required></label>'
                     '<button type="submit" data-action="check_roster">检查 Check</button></form>'
                     '<p class="muted">检查与命令行相同 Checked as `accessctl station roster publish` checks it; '
                     'you see what it changes before anything is published.</p>')
    parts.append(_doors_html(doors, published, st.tz, today))
    return layout("名单 Roster", "".join(parts), session, active="/roster")


def _person(r: dict) -> str:
    return (f'<td>{h(r.get("person_id"))}</td><td>{h(r.get("name"))}</td>'
            f'<td><code>{h(masking.mask_text(str(r.get("id_masked", ""))))}</code></td>'
            f'<td>{h(r.get("organisation"))}</td><td>{h(r.get("schedule_group"))}</td><td>{h(r.get("valid_until"))}</td>')


_HEAD = ('<thead><tr><th>编号 Person</th><th>姓名 Name</th><th>身份证号 ID number</th><th>单位 Organisation</th>'
         '<th>时段组 Group</th><th>有效期至 Valid until</th>{extra}</tr></thead>')


def _diff_html(upload, session) -> str:
    d = upload.diff
    against = f"version {upload.against}" if upload.against else "nothing published yet"
    out = [f'<section class="roster-diff" data-added="{len(d.added)}" data-removed="{len(d.removed)}" '
           f'data-changed="{len(d.changed)}" data-unchanged="{d.unchanged}"><h3>{h(upload.name)}: '
           f'{len(upload.rows)} persons, against {h(against)}</h3>'
           f'<p>新增 Added {len(d.added)} · 删除 Removed {len(d.removed)} · 变更 Changed {len(d.changed)} · '
           f'不变 Unchanged {d.unchanged}</p>']
    for kind, label, rows in (("added", "新增 Added", d.added), ("removed", "删除 Removed", d.removed)):
        if rows:
            body = "".join(f'<tr data-change="{kind}" data-person="{h(r.get("person_id"))}">{_person(r)}</tr>'
                           for r in rows[:LISTED])
            more = f'<p class="muted">… and {len(rows) - LISTED} more</p>' if len(rows) > LISTED else ""
            out.append(f'<h4>{label}</h4><table class="roster">{_HEAD.format(extra="")}<tbody>{body}</tbody>'
                       f'</table>{more}')
    if d.hours:
        items = "".join(f"<li>{h(line)}</li>" for line in d.hours)
        out.append(f'<section data-hours-changed="true"><h4>工作时段已变 Hours change</h4><ul>{items}</ul></section>')
    if d.changed:
        body = "".join(f'<tr data-change="changed" data-person="{h(c.after.get("person_id"))}">{_person(c.after)}'
                       f'<td>{h(", ".join(c.fields))}</td></tr>' for c in d.changed[:LISTED])
        more = f'<p class="muted">… and {len(d.changed) - LISTED} more</p>' if len(d.changed) > LISTED else ""
        out.append(f'<h4>变更 Changed</h4><table class="roster">{_HEAD.format(extra="<th>变更 What</th>")}'
                   f'<tbody>{body}</tbody></table>{more}')
    out.append(f'<form method="post" action="/roster/publish" class="filter">{csrf_field(session)}'
               f'<input type="hidden" name="upload" value="{h(upload.token)}">'
               f'<button type="submit" data-action="publish_roster">发布到 {h(upload.site)} 的所有门 Publish to every '
               f'door of {h(upload.site)}</button></form></section>')
    return "".join(out)


def _doors_html(doors: list[DoorRoster], published, tz, today) -> str:
    if not doors:
        return '<h3>各门名单 Doors</h3><p class="muted">尚无门 No door has reported yet.</p>'
    rows = []
    for d in doors:
        current = published is not None and d.site == published.site and d.version == published.version
        applied = "—"
        if d.applied:
            detail = d.applied.get("detail") if isinstance(d.applied.get("detail"), dict) else {}
            applied = (f'version {h(detail.get("version"))} '
                       f'{times.time_html(d.applied.get("ts"), tz, today)}')
        rejected = ""
        if d.rejected:
            detail = d.rejected.get("detail") if isinstance(d.rejected.get("detail"), dict) else {}
            version = f" (version {h(detail.get('version'))})" if detail.get("version") else ""
            rejected = (f'<span class="error" data-reason="{h(detail.get("reason"))}">{h(detail.get("reason"))}'
                        f'{version}: {h(masking.mask_text(str(detail.get("message", ""))))} '
                        f'{times.time_html(d.rejected.get("ts"), tz, today)}</span>')
        rows.append(f'<tr data-site="{h(d.site)}" data-door="{h(d.door)}" '
                    f'data-roster-version="{"" if d.version is None else d.version}" '
                    f'data-current="{"true" if current else "false"}" '
                    f'data-rejected="{"true" if d.rejected else "false"}">'
                    f'<td>{h(d.site)}</td><td>{h(d.door)}</td>'
                    f'<td>{"—" if d.version is None else d.version}</td><td>{applied}</td><td>{rejected}</td></tr>')
    return ('<h3>各门名单 Doors</h3><table class="roster-doors"><thead><tr><th>场所 Site</th><th>门 Door</th>'
            '<th>名单版本 Roster version</th><th>应用 Applied</th><th>拒收 Rejected</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')

