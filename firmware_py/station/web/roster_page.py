"""``/roster``: the admin's page for the site's roster bundle (DESIGN.md "Roster bundles").

Upload a roster CSV (``POST /roster/check``, a multipart form of at most :data:`UPLOAD_BYTES`): it is
checked exactly as ``accessctl station roster publish`` checks it (all or nothing, every bad row
named with its line) and set against the rows this station last published (:mod:`..roster.diff`).
The checked rows (masked and hashed: the CSV itself is not kept) wait in this process under a
random token for the admin who uploaded them; ``POST /roster/publish`` publishes them through
:func:`~firmware_py.station.roster.publish.publish_rows`, the command line's own path, over the
station's connection to the broker, and keeps them in the archive as the site's published roster.
Each door's column comes from its status (``roster_version``) and its ``roster_applied`` /
``roster_rejected`` events. Every route here is the admin's; the guard checks the role and the CSRF
token and audits each POST (the version, counts and who; never a row or an ID number).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from firmware_py.errors import BundleError, ConfigError, MonitorError, RosterError
from firmware_py.link import roster_keys
from firmware_py.station.archive import masking
from firmware_py.station.archive.store import PublishedRoster
from firmware_py.station.roster import diff
from firmware_py.station.roster.bundle import check_roster
from firmware_py.station.roster.publish import ClientLink, publish_rows, roster_keys_missing
from firmware_py.station.web import roster_view
from firmware_py.station.web.guard import Ctx, Refused, html

UPLOAD_BYTES = 16 * 1024 * 1024  # about 100,000 persons; a larger roster goes by `accessctl station roster publish`
KEPT_S = 3600.0  # how long a checked upload waits to be published
KEPT_UPLOADS = 8  # checked uploads kept at once (the oldest goes first)
FIELD = "roster"  # the form's file field


@dataclass(frozen=True)
class Upload:
    """A checked CSV waiting to be published: its rows as checked (hashed and masked) and what it changes."""

    token: str
    by: str
    name: str
    site: str
    rows: list
    diff: diff.RosterDiff
    against: int  # the published version it was compared with (0: none)
    at: float


class Uploads:
    """The checked uploads of one app, each for the admin who made it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.kept: dict[str, Upload] = {}

    def add(self, upload: Upload) -> None:
        with self.lock:
            self._expire()
            while len(self.kept) >= KEPT_UPLOADS:
                self.kept.pop(next(iter(self.kept)))
            self.kept[upload.token] = upload

    def take(self, token: str, by: str) -> Upload | None:
        with self.lock:
            self._expire()
            upload = self.kept.get(token)
            if upload is None or upload.by != by:
                return None
            return self.kept.pop(token)

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, u in self.kept.items() if now - u.at > KEPT_S]:
            del self.kept[token]


_uploads_lock = threading.Lock()


def _uploads(request: Request) -> Uploads:
    with _uploads_lock:
        uploads = getattr(request.app.state, "roster_uploads", None)
        if uploads is None:
            uploads = request.app.state.roster_uploads = Uploads()
        return uploads


def _ready(ctx: Ctx):
    """The station's configuration and its site, or 409 saying what to configure."""
    cfg = ctx.station.config
    if cfg is None:
        raise Refused(409, "this station has no configuration file to publish with: start it with "
                           "`accessctl station serve --config FILE` (docs/commissioning.md, 'Roster keys')")
    missing = roster_keys_missing(cfg)
    if missing:
        raise Refused(409, f"未配置名单密钥，不能发布 Cannot publish: {missing}")
    if not cfg.roster.site:
        raise Refused(409, f"{cfg.path}: [roster] site is not set: name the site whose doors take the roster")
    return cfg


# ---------------------------------------------------------------- handlers


def page(request: Request, ctx: Ctx) -> Response:
    return html(roster_view.roster_html(ctx, **_state(ctx)))


def check(request: Request, ctx: Ctx) -> Response:
    cfg = _ready(ctx)
    name, data = ctx.files.get(FIELD, ("", b""))
    if not data:
        raise Refused(400, "选择一个名单文件 Choose a roster CSV file to upload (the form's file field 'roster')")
    name = masking.mask_text(name) or "roster.csv"
    st = ctx.station
    try:
        site_key = roster_keys.load_site_key(cfg.roster.site_key)
        rows = check_roster(data, name, site_key=site_key, schedule_groups=cfg.roster.schedules,
                            today=st.now().date())
    except RosterError as exc:
        ctx.note = f"refused {name}: {str(exc).count(chr(10))} problem line(s)"
        return html(roster_view.roster_html(ctx, **_state(ctx), refusal=masking.mask_text(str(exc))), 400)
    except ConfigError as exc:
        raise Refused(409, str(exc)) from None
    published = st.store.published_roster(cfg.roster.site)
    kept = published.rows if published else None
    found = diff.compare(diff.read_kept(kept), rows, diff.hours_changes(diff.kept_hours(kept), diff.station_hours(cfg)))
    upload = Upload(secrets.token_urlsafe(24), ctx.session.name, name, cfg.roster.site, rows, found,
                    published.version if published else 0, time.monotonic())
    _uploads(request).add(upload)
    ctx.note = (f"checked {name}: {len(rows)} persons, {len(found.added)} added, {len(found.removed)} removed, "
                f"{len(found.changed)} changed against version {upload.against}")
    return html(roster_view.roster_html(ctx, **_state(ctx), upload=upload))


def publish(request: Request, ctx: Ctx) -> Response:
    cfg = _ready(ctx)
    st = ctx.station
    upload = _uploads(request).take(ctx.form.get("upload", ""), ctx.session.name)
    if upload is None:
        raise Refused(409, "没有待发布的名单 No checked roster to publish under this token (checked over an hour ago, "
                           "by another account, published already, or the station restarted): upload it again")
    published = st.store.published_roster(upload.site)
    if (published.version if published else 0) != upload.against:
        raise Refused(409, f"the roster was published again (version {published.version}) since this file was "
                           "checked against version {upload.against}: upload it again to see what it changes")
    monitor = st.monitor
    if monitor is None or not monitor.connected or getattr(monitor, "client", None) is None:
        ctx.note = "not published: the station is not connected to the broker"
        raise Refused(503, "站点未连接消息服务器，未发布 The station is not connected to the broker: nothing was "
                           "published (the doors keep the roster they have)")
    link = ClientLink(monitor.client, (published.version, published.chunks) if published else (0, 0))
    try:
        done = publish_rows(cfg, upload.rows, link=link, site=upload.site, now=st.now())
    except (ConfigError, BundleError) as exc:
        raise Refused(409, str(exc)) from None
    except MonitorError as exc:
        ctx.note = f"not published: {exc}"
        raise Refused(503, str(exc)) from None
    b = done.bundle
    st.store.keep_published_roster(PublishedRoster(
        b.site, b.version, st.now().isoformat(timespec="seconds"), ctx.session.name, b.count, len(b.chunks),
        _payload_sha256(cfg, b), diff.kept_rows(upload.rows, diff.station_hours(cfg))))
    d = upload.diff
    ctx.note = (f"published roster version {b.version} for {b.site}: {b.count} persons in {len(b.chunks)} "
                f"chunk(s); {len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed")
    return html(roster_view.roster_html(ctx, **_state(ctx), done=done))


check.upload_bytes = UPLOAD_BYTES


def _payload_sha256(cfg, bundle) -> str:
    """The payload's SHA-256 as the signed manifest names it (read back with the station's public key)."""
    from firmware_py.link import roster_bundle

    public = roster_keys.load_signing_key(cfg.roster.signing_key).public_key()
    return roster_bundle.read_message(bundle.manifest, public).sha256


def _state(ctx: Ctx) -> dict:
    cfg = ctx.station.config
    missing = roster_keys_missing(cfg) if cfg is not None else "no configuration file"
    site = cfg.roster.site if cfg is not None else ""
    published = ctx.station.store.published_roster(site) if site else None
    return {"missing": missing, "site": site, "published": published,
            "doors": roster_view.door_rosters(ctx.station)}
