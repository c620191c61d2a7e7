"""The guard in front of every handler of the station's web app, and what handlers work with.

:func:`guarded` is the one place where every request is authenticated (session cookie), checked
against cross-site forgery (same origin, and the session's CSRF token as the ``csrf`` form field or
the ``X-CSRF-Token`` header on every state-changing request), authorised (role) and, when it
changes state, audited with who, when, what and the result. ``/api/`` answers 401 without a
session; a page redirects to ``/login``. A state-changing request that fails the CSRF or role
check answers 403 before its handler runs: nothing reaches the doors.
"""

from __future__ import annotations

import hmac
import inspect
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from firmware_py.station.accounts import accounts, audit
from firmware_py.station.accounts.accounts import Session, role_allows
from firmware_py.station.archive.store import StationStore
from firmware_py.station.web import pages
from firmware_py.station.web.throttle import LoginThrottle

log = logging.getLogger(__name__)

COOKIE = "station_session"
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)  # the dates a request may name
# The form fields the routes read, the ones the audit trail keeps: never a password or the CSRF
# token, nor whatever else a sender adds (an anonymous flood of fields would fill a trail nobody may delete).
AUDITED_FIELDS = ("username", "role", "next", "person_id", "reason", "comment", "epoch")
MAX_BODY = 64 * 1024


@dataclass
class Station:
    """What the web app works with: the archive's store (either backend), the site's zone, the monitor
    (or PostgreSQL ingest) whose MQTT client publishes the commands."""

    store: StationStore
    tz: ZoneInfo
    prefix: str = "accessctl"
    monitor: object | None = None  # the ingest (ingest.ingest.Ingest): .connected, .client
    command_key: object | None = None  # the station's Ed25519 signing key: door commands go signed
    config: object | None = None  # the StationConfig (the roster page's [roster] keys and broker prefix)
    https: bool = False
    session_idle_s: float = 8 * 3600
    poll_s: float = 0.1
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.chains = self.store.chains()

    def now(self) -> datetime:
        return datetime.now(self.tz)

    @property
    def broker_connected(self) -> bool:
        return bool(self.monitor is not None and self.monitor.connected)


@dataclass
class Ctx:
    """One request as the guard saw it."""

    station: Station
    session: Session | None
    form: dict[str, str]
    who: str = "-"
    note: str = ""  # what happened, for the audit trail
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # field -> (file name, bytes): uploads


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# ---------------------------------------------------------------- the guard


def guarded(handler: Callable, role: str | None, station: Station) -> Callable:
    """``handler`` behind the guard; a handler with an ``upload_bytes`` attribute also takes a
    multipart form (a file upload) of at most that many bytes, its files in ``ctx.files``."""
    upload_bytes = getattr(handler, "upload_bytes", 0)

    async def endpoint(request: Request) -> Response:
        changing = request.method not in ("GET", "HEAD")
        api = request.url.path.startswith("/api/")
        ctx = Ctx(station, None, {})
        try:
            token = request.cookies.get(COOKIE)
            ctx.session = await anyio.to_thread.run_sync(accounts.find_session, station.store, token, station.now(),
                                                         station.session_idle_s) if token else None
            ctx.who = ctx.session.name if ctx.session else "-"
            if role and ctx.session is None:  # before the body: nothing is read for nobody
                raise Refused(401 if api or not changing else 403, "not logged in 未登录")
            if changing:
                ctx.form = await _read_form(request, upload_bytes, ctx.files)
                _check_same_origin(request)
                if role and (ctx.session is None or not _csrf_ok(ctx.session, request, ctx.form)):
                    raise Refused(403, "missing or invalid CSRF token 跨站请求校验失败")
            if role and not role_allows(ctx.session.role, role):
                raise Refused(403, f"the role {ctx.session.role} may not do this 权限不足 (needs {role})")
            if inspect.iscoroutinefunction(handler):
                response = await handler(request, ctx)
            else:
                response = await anyio.to_thread.run_sync(handler, request, ctx)
        except Refused as r:
            ctx.note = ctx.note or r.message
            response = _refusal(request, ctx, r, api)
        except Exception as exc:  # a defect: answered and audited like any refusal, the server goes on
            log.exception("%s %s failed", request.method, request.url.path)
            ctx.note = f"internal error: {type(exc).__name__}"
            response = _refusal(request, ctx, Refused(500, "internal error 内部错误"), api)
        if changing:
            detail = {k: ctx.form[k] for k in AUDITED_FIELDS if k in ctx.form}
            await anyio.to_thread.run_sync(lambda: audit.record(
                station.store, at=station.now(), who=ctx.who, address=address(request),
                action=f"{request.method} {request.url.path}", detail=detail,
                result=f"{response.status_code} {ctx.note}".strip()))
        return response

    return endpoint


def _refusal(request: Request, ctx: Ctx, r: Refused, api: bool) -> Response:
    if api:
        return JSONResponse({"error": r.message}, r.status)
    if r.status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), 303)
    return HTMLResponse(pages.message_page(f"{r.status}", r.message, ctx.session), r.status)


async def _read_form(request: Request, upload_bytes: int = 0,
                     files: dict[str, tuple[str, bytes]] | None = None) -> dict[str, str]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    limit = max(MAX_BODY, upload_bytes) if kind == "multipart/form-data" else MAX_BODY
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        raise Refused(400, "the request's Content-Length is not a number") from None
    if declared > limit:
        raise Refused(413, f"the request is over {limit} bytes")
    parts, size = [], 0
    async for chunk in request.stream():
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"the request is over {limit} bytes")
    body = b"".join(parts)
    if kind == "multipart/form-data" and upload_bytes and files is not None:
        return _multipart(request.headers.get("content-type", ""), body, files)
    try:
        if kind == "application/json":
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return {str(k)[:64]: str(v) for k, v in data.items() if isinstance(v, (str, int, float, bool))}
        if kind in ("application/x-www-form-urlencoded", ""):
            return {k[:64]: v for k, v in parse_qsl(body.decode("utf-8"), keep_blank_values=True)}
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(400, f"the request body cannot be read: {exc}") from None
    except RecursionError:
        raise Refused(400, "the request body cannot be read: JSON nested too deeply") from None
    raise Refused(415, f"send a form or JSON, not {kind}")


def _multipart(content_type: str, body: bytes, files: dict[str, tuple[str, bytes]]) -> dict[str, str]:
    """A ``multipart/form-data`` body: its text fields (returned) and its files (into ``files``)."""
    from email import policy
    from email.parser import BytesParser

    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + body)
    if not message.is_multipart() or message.defects:
        raise Refused(400, "the request body cannot be read: not a multipart form")
    form: dict[str, str] = {}
    for part in message.iter_parts():
        name = str(part.get_param("name", "", header="content-disposition"))[:64]
        data = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files[name] = (str(part.get_filename())[:200], data)
            continue
        try:
            form[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, f"the request body cannot be read: the field {name!r} is not UTF-8") from None
    return form


def _check_same_origin(request: Request) -> None:
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise Refused(403, "a cross-site request 跨站请求")
    origin = request.headers.get("origin")
    if origin and origin != "null" and origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
        raise Refused(403, f"a request from another origin ({origin[:100]}) 跨站请求")
    if origin == "null":
        raise Refused(403, "a request from an opaque origin 跨站请求")


def _csrf_ok(session: Session, request: Request, form: dict[str, str]) -> bool:
    given = request.headers.get("x-csrf-token") or form.get("csrf") or ""
    return bool(given) and hmac.compare_digest(given.encode(), session.csrf.encode())


def address(request: Request) -> str:
    return request.client.host if request.client else "?"


def html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status)


def done(request: Request, result: dict, back: str) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse(result)
    return RedirectResponse(back, 303)


def safe_next(value: str | None) -> str:
    return value if value and value.startswith("/") and not value.startswith("//") and "\\" not in value else "/"


def parse_date(text: str | None, default: date, name: str) -> date:
    if not text:
        return default
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise Refused(400, f"{name}={text[:40]!r} is not a date like 2026-11-23") from None
    if not FIRST_DAY <= day <= LAST_DAY:  # a day either side is read too: the calendar's ends overflow
        raise Refused(400, f"{name}={text} is not a date from {FIRST_DAY} to {LAST_DAY}")
    return day
