"""The station's web app (Starlette): the handlers and the one routing table.

Every route goes through :func:`.guard.guarded` (session, CSRF, role, audit); the paths are the
page's testing contract (DESIGN.md "The supervision station").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from firmware_py.core.register import REGISTER_TYPES
from firmware_py.station.accounts import accounts, audit
from firmware_py.station.web import (
    accounts_page,
    alarm_page,
    alarms,
    commands,
    pages,
    problems,
    queries,
    roster_page,
    search,
    search_pages,
)
from firmware_py.station.web import register as register_export
from firmware_py.station.web.door_answers import DoorAnswers
from firmware_py.station.web.guard import (
    COOKIE,
    Ctx,
    Refused,
    Station,
    address,
    done,
    guarded,
    html,
    safe_next,
)
from firmware_py.station.web.stream import door_tiles, event_stream

STATIC = Path(__file__).parent / "static"
REGISTER_PAGE = 200  # rows of one register page
EVENTS_PAGE = 100  # of one searched page of /events
API_LIMIT = 5000  # events of one /api/events answer


# ---------------------------------------------------------------- log in and out


def login_page(request: Request, ctx: Ctx) -> Response:
    if ctx.session:
        return RedirectResponse(safe_next(request.query_params.get("next")), 303)
    return html(pages.login_page(next_path=safe_next(request.query_params.get("next"))))


def login(request: Request, ctx: Ctx) -> Response:
    station, form = ctx.station, ctx.form
    name, password = form.get("username", "")[:64], form.get("password", "")[:accounts.MAX_PASSWORD]
    ctx.who = name or "-"
    next_path = safe_next(form.get("next"))
    name_key, address_key = f"user:{name.lower()}", f"address:{address(request)}"
    with station.throttle.password_check() as free:
        if not free:
            ctx.note = "busy: too many logins at once"
            message = "登录请求过多，请稍后再试 Too many logins at once: try again in a few seconds"
            return HTMLResponse(pages.login_page(message, next_path, name), 503, headers={"Retry-After": "5"})
        wait = station.throttle.begin([name_key, address_key])
        if wait > 0:
            ctx.note = "throttled"
            seconds = int(wait) + 1
            message = f"登录失败次数过多，请 {seconds} 秒后再试 Too many failed logins: try again in {seconds} s"
            return HTMLResponse(pages.login_page(message, next_path, name), 429, headers={"Retry-After": str(seconds)})
        role = accounts.authenticate(station.store, name, password)
    if role is None:
        ctx.note = "wrong user name or password"
        return HTMLResponse(pages.login_page("用户名或密码错误 Wrong user name or password", next_path, name), 401)
    station.throttle.succeeded(name_key, address_key)
    station.store.note_login(name, station.now())
    accounts.close_session(station.store, request.cookies.get(COOKIE, ""))  # one session per browser
    session = accounts.open_session(station.store, name, station.now())
    ctx.note = f"logged in as {role}"
    response = RedirectResponse(next_path, 303)
    response.set_cookie(COOKIE, session.token, httponly=True, samesite="strict", secure=station.https, path="/")
    return response


def logout(request: Request, ctx: Ctx) -> Response:
    accounts.close_session(ctx.station.store, request.cookies.get(COOKIE, ""))
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=ctx.station.https)
    return response


# ---------------------------------------------------------------- pages


def overview(request: Request, ctx: Ctx) -> Response:
    st = ctx.station
    last = queries.last_id(st.store)  # before the tiles: the stream resends what arrives while they are made
    tiles = door_tiles(st, ctx.session)
    return html(pages.overview(tiles, ctx.session, st.broker_connected, last,
                               sum(t["open_alarms"] for t in tiles)))


def events_page(request: Request, ctx: Ctx) -> Response:
    """The live list; with filters or a cursor, one page of the archive searched (:mod:`.search`)."""
    st = ctx.station
    today = st.now().date()
    filters = search.parse(request.query_params, today, first_default=today - timedelta(days=search.MAX_DAYS - 1)
                           if "before" in request.query_params else None)
    doors = queries.doors(st.store)
    if filters.narrowed or any(k in request.query_params for k in ("from", "to", "date")):
        found = search.page(st.store, filters, st.tz, EVENTS_PAGE)
        return html(search_pages.events_search_page(filters, found.rows, found.before, doors, ctx.session, st.tz,
                                                    today))
    last = queries.last_id(st.store)
    recent = queries.recent_events(st.store, 100)
    back = search.Filters(today - timedelta(days=search.MAX_DAYS - 1), today)
    above, below = search_pages.events_live_extras(back, doors, recent[0].id if recent else None)
    return html(pages.events_page(recent, ctx.session, last, above, below))


def alarms_page(request: Request, ctx: Ctx) -> Response:
    """The queue searched as the register is (:mod:`.search`; without dates, every day) and paged
    by its keyset (``before``)."""
    st = ctx.station
    store = st.store
    filters = search.parse(request.query_params, st.now().date(), dates_optional=True)
    last = queries.last_id(store)
    found = alarms.queue_page(store, st.now(), filters, st.tz)
    counts = alarms.open_counts(store, st.now())
    total = sum(sum(types.values()) for types in counts.values())
    doors = queries.doors(store)
    known = {(d.site, d.door) for d in doors}
    doors += [queries.DoorRow(s, d, None, None, None) for s, d in sorted(counts) if (s, d) not in known]
    return html(alarm_page.alarms_page(found.rows, found.before, total, alarms.alarms(store, acknowledged=True),
                                       alarms.closed_by_doors(store), filters, doors, last, ctx.session))


def alarm_around(request: Request, ctx: Ctx) -> Response:
    """The door's events around one of its alarms (``?epoch=``: the chain epoch, default the current)."""
    st = ctx.station
    site, door, seq = request.path_params["site"], request.path_params["door"], request.path_params["seq"]
    if not 0 < seq < 1 << 62:  # seq ± the span stays within the archives' integers
        raise Refused(404, f"no event #{seq}")
    epoch = _epoch(request.query_params.get("epoch", ""), st, site, door)
    span = 10
    rows = [queries.StreamRow(i, s, d, queries.parse_payload(p), ep)
            for i, s, d, p, ep in st.store.events_around(site, door, epoch, seq, span)]
    alarm = next((alarms.Alarm(site, door, seq, r.shown["ts"] or "", r.shown["type"] or "", r.shown, epoch,
                               summary=alarms.describe(r.event))
                  for r in rows if r.shown["seq"] == seq and r.shown["category"] == "alarm"), None)
    return html(alarm_page.around_page(alarm, site, door, epoch, seq, rows, span, ctx.session),
                200 if rows else 404)


def _epoch(text: str, st: Station, site: str, door: str) -> int:
    text = text.strip()
    if text and not (text.isascii() and text.isdigit() and 0 < int(text) < 1 << 31):
        raise Refused(400, f"epoch={text[:20]!r} is not a chain epoch (1, 2 …)")
    return int(text) if text else queries.current_epoch(st.store, site, door)


ALARM_COLUMNS = ("site", "door", "epoch", "seq", "ts", "type", "detail",
                 "acknowledged_by", "acknowledged_at", "comment")


def alarms_csv(request: Request, ctx: Ctx) -> Response:
    store = ctx.station.store
    table = ({"site": a.site, "door": a.door, "epoch": a.epoch, "seq": a.seq, "ts": a.ts, "type": a.type,
              "detail": json.dumps(a.event["detail"] or {}, ensure_ascii=False),
              "acknowledged_by": a.acknowledged_by, "acknowledged_at": a.acknowledged_at, "comment": a.comment}
             for a in alarms.alarms(store, acknowledged=False, limit=100000)
             + alarms.alarms(store, acknowledged=True, limit=100000))
    return Response(register_export.to_csv(table, ALARM_COLUMNS), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="alarms.csv"'})


def _register_filters(request: Request, st: Station) -> search.Filters:
    return search.parse(request.query_params, st.now().date())


def register_page(request: Request, ctx: Ctx) -> Response:
    from firmware_py.station.web import chart

    st = ctx.station
    filters = _register_filters(request, st)
    found = search.page(st.store, filters, st.tz, REGISTER_PAGE, within=REGISTER_TYPES)
    charts = None
    if filters.first == filters.last and filters.before is None:  # the chart of the day, on its newest page
        day = search.chart_events(st.store, filters, st.tz, within=REGISTER_TYPES)
        charts = (chart.hours_svg(chart.entries_per_hour(day, st.tz)), chart.reasons_svg(chart.denials_by_reason(day)))
    rows = register_export.rows(reversed(found.rows))  # a page reads in time order, as a paper register
    return html(search_pages.register_page(filters, rows, found.before, queries.doors(st.store), charts, ctx.session,
                                           st.tz, st.now().date()))


def _span_name(filters: search.Filters) -> str:
    first, last = filters.first.isoformat(), filters.last.isoformat()
    return first if first == last else f"{first}_{last}"


def register_csv(request: Request, ctx: Ctx) -> Response:
    """The register of the filters' days as CSV (BOM; ``?lang=zh``: Chinese headers and labels)."""
    st = ctx.station
    filters = _register_filters(request, st)
    chinese = request.query_params.get("lang") == "zh"
    rows = register_export.rows(search.every(st.store, filters, st.tz, within=REGISTER_TYPES))
    data = register_export.to_csv(register_export.in_chinese(rows) if chinese else rows,
                                  headers=register_export.CHINESE_HEADERS if chinese else None)
    name = f"register-{_span_name(filters)}{'-zh' if chinese else ''}.csv"
    return Response(data, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "X-Content-SHA256": register_export.digest(data)})


def register_print(request: Request, ctx: Ctx) -> Response:
    st = ctx.station
    filters = _register_filters(request, st)
    rows = register_export.rows(search.every(st.store, filters, st.tz, within=REGISTER_TYPES))
    data = register_export.to_csv(rows)
    doors = sorted({(d.site, d.door, d.epoch) for d in queries.doors(st.store)
                    if (not filters.site or d.site == filters.site)
                    and (not filters.door or d.door == filters.door)})
    chains = [(s, d, queries.chain(st.chains, s, d, epoch)) for s, d, epoch in doors]  # each door's current epoch
    return html(search_pages.register_print(filters, rows, chains, register_export.digest(data), len(data), st.now(),
                                            ctx.session, st.tz))


def audit_page(request: Request, ctx: Ctx) -> Response:
    return html(pages.audit_page(audit.entries(ctx.station.store), ctx.session, ctx.station.tz))


def problems_page(request: Request, ctx: Ctx) -> Response:
    """Each door's refused messages and conflicting copies (``?site=&door=`` for one door)."""
    params = {k: request.query_params.get(k, "")[:64] for k in ("site", "door")}
    doors = problems.per_door(ctx.station.store, params["site"] or None, params["door"] or None)
    return html(pages.problems_page(doors, params, problems.PER_DOOR, ctx.session))


# ---------------------------------------------------------------- API


def api_events(request: Request, ctx: Ctx) -> Response:
    """``{"events": [...]}`` of the filters (:mod:`.search`), oldest first: the newest ``limit`` (default
    and most :data:`API_LIMIT`) before the cursor; ``"before"``, the next page's cursor, when there are more."""
    st = ctx.station
    filters = search.parse(request.query_params, st.now().date())
    text = request.query_params.get("limit") or str(API_LIMIT)
    if not (text.isascii() and text.isdigit() and 0 < int(text) <= API_LIMIT):
        raise Refused(400, f"limit={text[:20]!r} is not a number from 1 to {API_LIMIT}")
    found = search.page(st.store, filters, st.tz, int(text))
    body: dict = {"events": [r.event for r in reversed(found.rows)]}
    if found.before is not None:
        body["before"] = found.before
    return JSONResponse(body)


def api_doors(request: Request, ctx: Ctx) -> Response:
    tiles = door_tiles(ctx.station, ctx.session)
    return JSONResponse({"broker_connected": ctx.station.broker_connected,
                         "doors": [{k: v for k, v in t.items() if k != "inside_html"} for t in tiles]})


async def api_stream(request: Request, ctx: Ctx) -> Response:
    return event_stream(request, ctx.station, ctx.session, token=request.cookies.get(COOKIE, ""))


# ---------------------------------------------------------------- state-changing requests


def door_action(request: Request, ctx: Ctx) -> Response:
    st = ctx.station
    site, door, action = (request.path_params[k] for k in ("site", "door", "action"))
    if action not in commands.ACTIONS:
        raise Refused(404, f"no such door action {action[:40]!r}")
    known = next((d for d in queries.doors(st.store) if d.site == site and d.door == door), None)
    if known is None:
        raise Refused(404, f"no door {site}/{door} in the archive")
    if isinstance(known.status, dict) and known.status.get("online") is False:
        ctx.note = "not sent: the door is offline"
        raise Refused(409, f"门离线，未发送 {site}/{door} is offline: nothing was sent (it would act on the command "
                           "whenever it came back)")
    try:
        command = commands.build(action, ctx.session.name, person_id=ctx.form.get("person_id", ""),
                                 reason=ctx.form.get("reason", ""))
    except commands.CommandRefused as exc:
        raise Refused(400, str(exc)) from None
    answers: DoorAnswers = request.app.state.door_answers
    if st.monitor is not None:
        answers.watch(st.monitor)
    answers.sent(command["id"], site, door, action, ctx.session.name)
    try:
        sent = commands.send(st.monitor, st.prefix, site, door, command, key=st.command_key, now=st.now())
    except ConnectionError as exc:
        ctx.note = f"not sent: {exc}"
        raise Refused(503, str(exc)) from None
    ctx.note = f"sent {sent.id} to {sent.topic}"
    return done(request, {"ok": True, "id": sent.id, "topic": sent.topic}, safe_next(ctx.form.get("next")))


def acknowledge(request: Request, ctx: Ctx) -> Response:
    """Acknowledge alarm ``seq`` of the door's chain epoch given as the ``epoch`` field (default: its current epoch)."""
    st = ctx.station
    site, door, seq = request.path_params["site"], request.path_params["door"], request.path_params["seq"]
    if not 0 < seq < 1 << 63:
        raise Refused(404, f"no alarm #{seq}")
    epoch = _epoch(ctx.form.get("epoch", ""), st, site, door)
    try:
        alarms.acknowledge(st.store, site, door, epoch, seq, ctx.session.name, ctx.form.get("comment", ""), st.now())
    except alarms.AlarmError as exc:
        raise Refused(409, str(exc)) from None
    ctx.note = f"acknowledged {site}/{door} #{seq} of epoch {epoch}"
    return done(request, {"ok": True}, _back_to_alarms(ctx))


def acknowledge_chosen(request: Request, ctx: Ctx) -> Response:
    """Acknowledge the alarms chosen on the page (form fields ``pick-…``, each an alarm's key) with one comment."""
    st = ctx.station
    keys = [v for k, v in ctx.form.items() if k.startswith("pick-") and v]
    try:
        outcome = alarms.acknowledge_many(st.store, keys, ctx.session.name, ctx.form.get("comment", ""), st.now())
    except alarms.AlarmError as exc:
        raise Refused(400, str(exc)) from None
    ctx.note = f"acknowledged {len(outcome['ok'])}: {', '.join(outcome['ok'])[:2000]}"
    skipped = outcome["already_acknowledged"] + outcome["not_an_alarm"]
    if skipped:
        ctx.note += f"; not acknowledged: {', '.join(skipped)[:1000]}"
    return done(request, {"ok": True, **outcome}, _back_to_alarms(ctx))


def _back_to_alarms(ctx: Ctx) -> str:
    """Back to the queue as it was filtered (the form's ``next``, a path on /alarms)."""
    back = safe_next(ctx.form.get("next"))
    return back if back == "/alarms" or back.startswith("/alarms?") else "/alarms"


def api_command(request: Request, ctx: Ctx) -> Response:
    """A command the page sent, and the door's answer once it came (``answered``)."""
    id = request.path_params["id"]
    sent = request.app.state.door_answers.get(id)
    if sent is None:
        raise Refused(404, f"no command {id[:40]!r} was sent from this station since it started")
    return JSONResponse({"id": id, "site": sent.site, "door": sent.door, "action": sent.action,
                         "answered": sent.ok is not None, "ok": sent.ok, "error": sent.error})


# ---------------------------------------------------------------- the app

ROUTES: list[tuple[str, str, Callable, str | None]] = [
    ("/login", "GET", login_page, None),
    ("/login", "POST", login, None),
    ("/logout", "POST", logout, "viewer"),
    ("/", "GET", overview, "viewer"),
    ("/events", "GET", events_page, "viewer"),
    ("/alarms", "GET", alarms_page, "viewer"),
    ("/alarms.csv", "GET", alarms_csv, "viewer"),
    ("/alarms/acknowledge", "POST", acknowledge_chosen, "operator"),
    ("/alarms/{site}/{door}/{seq:int}", "GET", alarm_around, "viewer"),
    ("/register", "GET", register_page, "viewer"),
    ("/register.csv", "GET", register_csv, "viewer"),
    ("/register/print", "GET", register_print, "viewer"),
    ("/accounts", "GET", accounts_page.page, "admin"),
    ("/accounts", "POST", accounts_page.add, "admin"),
    ("/accounts/{name}/{change}", "POST", accounts_page.change, "admin"),
    ("/roster", "GET", roster_page.page, "admin"),
    ("/roster/check", "POST", roster_page.check, "admin"),
    ("/roster/publish", "POST", roster_page.publish, "admin"),
    ("/audit", "GET", audit_page, "admin"),
    ("/problems", "GET", problems_page, "admin"),
    ("/doors/{site}/{door}/{action}", "POST", door_action, "operator"),
    ("/alarms/{site}/{door}/{seq:int}/acknowledge", "POST", acknowledge, "operator"),
    ("/api/events", "GET", api_events, "viewer"),
    ("/api/doors", "GET", api_doors, "viewer"),
    ("/api/stream", "GET", api_stream, "viewer"),
    ("/api/doors/{site}/{door}/{action}", "POST", door_action, "operator"),
    ("/api/alarms/{site}/{door}/{seq:int}/acknowledge", "POST", acknowledge, "operator"),
    ("/api/alarms/acknowledge", "POST", acknowledge_chosen, "operator"),
    ("/api/commands/{id}", "GET", api_command, "operator"),
]

SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                 b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class _SecurityHeaders:
    """Adds the headers above to every HTTP response (pure ASGI: streaming responses stay streaming)."""

    def __init__(self, app, https: bool):
        self.app = app
        self.headers = SECURITY_HEADERS + ([(b"strict-transport-security", b"max-age=31536000")] if https else [])

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in names]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def create_app(station: Station) -> Starlette:
    """The ASGI app of ``station``; the paths are the page's testing contract (DESIGN.md)."""
    from starlette.middleware import Middleware

    routes = [Route(path, guarded(handler, role, station), methods=[method]) for path, method, handler, role in ROUTES]
    routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))

    async def no_route(request: Request, exc) -> Response:
        status = getattr(exc, "status_code", 404)
        if request.url.path.startswith("/api/"):
            token = request.cookies.get(COOKIE)
            session = await anyio.to_thread.run_sync(accounts.find_session, station.store, token, station.now(),
                                                     station.session_idle_s) if token else None
            if session is None:
                return JSONResponse({"error": "not logged in 未登录"}, 401)
            return JSONResponse({"error": getattr(exc, "detail", "not found")}, status)
        return HTMLResponse(pages.message_page(str(status), "没有此页 No such page", None), status)

    app = Starlette(routes=routes, exception_handlers={404: no_route, 405: no_route},
                    middleware=[Middleware(_SecurityHeaders, https=station.https)])
    app.state.station = station
    app.state.door_answers = DoorAnswers(station.prefix)
    return app
