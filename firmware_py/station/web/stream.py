"""What changes on the page without a reload: the door tiles, the alarms and the live stream (server-sent events).

The stream polls the archive for rows newer than the last one sent (the archive's rowid, its
received order): simple, and a reconnecting browser's ``Last-Event-ID`` says exactly where to
resume, even across a station restart. Each archived event is one ``event`` message with that id
(``alarm``: true for an alarm to act on, not a state event that ends one); the door tiles go out as
a ``doors`` message (no id) whenever they change (``?doors=1``; made every 0.5 s, or less often
when making them takes long, on a thread of their own while the stream goes on sending events and
alarms: a fleet's 500 tiles take a while and must not hold an alarm back; a tile's alarm line
comes with each ``alarms`` message, and tiles made before the latest one take its alarms), the
open alarms as an ``alarms`` message whenever they change: their count, each door's open alarm types and, for the queue
(``?queue=1`` with the page's query: its filters and cursor, :mod:`.search`), the rows of that page
as the page makes them (:mod:`.alarm_page`) and ``before``, the cursor of the page after it.
``?after=now`` starts after the newest archived event (a page that shows no events, only the count
of alarms). An ``event`` of an alarm says which ``sound`` the page makes for it (``duress`` or
``alarm``).

Each tile is made from what its door stored as the page reads it (:mod:`.shown`); a door whose rows
still cannot be made into a tile gets a tile saying so, and every other door's tile is made as usual.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import anyio
from starlette.requests import Request
from starlette.responses import StreamingResponse

from firmware_py.core.event_line import printable
from firmware_py.errors import StoreError
from firmware_py.station.accounts import accounts
from firmware_py.station.accounts.accounts import Session
from firmware_py.station.web import alarm_page, alarms, answers, pages, queries, search, shown
from firmware_py.station.web.problems import counts as problem_counts

if TYPE_CHECKING:
    from firmware_py.station.web.guard import Station

KEEPALIVE_S = 15.0
SESSION_RECHECK_S = 30.0
TILES_EVERY_S = 0.5
TILES_SHARE = 4.0  # ... and at most a fifth of the time: a fleet's 500 tiles take ~0.2 s to make on one store
TILE_MAKERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tiles")  # beside the stream, not in its way
ALARMS_EVERY_S = 1.0  # the open alarms are read again at least this often (acknowledged elsewhere)
ALARMS_AT_MOST_S = 0.2  # and at most this often, however fast alarms arrive


log = logging.getLogger(__name__)


def door_tiles(station: Station, session: Session) -> list[dict]:
    """One dict per archived door: site, door, online, the tile's field texts, who is inside, and
    how many of its messages were refused or kept apart as conflicting copies (``problems``)."""
    problems = problem_counts(station.store)
    open_alarms = alarms.open_counts(station.store, station.now())
    tiles = []
    for d in queries.doors(station.store):
        try:
            tile = _tile(station, session, d)
        except StoreError:
            raise
        except Exception:  # a defect met on one door's rows: that door's tile says so, the others are made
            log.exception("%s/%s: its tile cannot be made from what it stored", printable(d.site), printable(d.door))
            tile = {"site": d.site, "door": d.door, "online": False, "chain_ok": False, "inside": [],
                    "fields": {key: shown.UNKNOWN for key, _ in pages.FIELD_LABELS} | {"online": "? 未知 unknown"},
                    "inside_html": pages.inside_list(d.site, d.door, None, session)}
        tile["problems"] = problems.get((d.site, d.door), 0)
        types = open_alarms.get((d.site, d.door), {})
        tile["alarms"], tile["open_alarms"] = types, sum(types.values())
        tile["alarm_text"] = alarm_page.tile_alarm_text(types)
        tiles.append(tile)
    return tiles


def _tile(station: Station, session: Session, d: queries.DoorRow) -> dict:
    status = d.status if isinstance(d.status, dict) else None
    chain = queries.chain(station.chains, d.site, d.door, d.epoch)
    last = queries.last_event(station.store, d.site, d.door)
    people = shown.people_inside(d.occupancy)
    return {
        "site": d.site, "door": d.door, "online": bool(status and status.get("online") is True),
        "fields": pages.tile_fields(status, last, chain), "chain_ok": chain.ok, "inside": people or [],
        "inside_html": pages.inside_list(d.site, d.door, people, session),
    }


def _message(data: dict, *, event: str, id: int | None = None) -> str:
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _start_id(request: Request, station: Station) -> int:
    for text in (request.headers.get("last-event-id"), request.query_params.get("after")):
        if text and text.isascii() and text.isdigit() and len(text) < 19:
            return int(text)
        if text == "now":
            return queries.last_id(station.store)
    return 0


def alarm_summary(station: Station, session: Session, queue: search.Filters | None) -> dict:
    """The ``alarms`` message: how many are open, each door's open types and, for the queue's
    page ``queue`` (filters and cursor), its rows and the next page's cursor."""
    counts = alarms.open_counts(station.store, station.now())
    out = {"count": sum(sum(types.values()) for types in counts.values()),
           "doors": [{"site": s, "door": d, "types": types, "text": alarm_page.tile_alarm_text(types)}
                     for (s, d), types in sorted(counts.items())]}
    if queue is not None:
        found = alarms.queue_page(station.store, station.now(), queue, station.tz)
        out["rows"] = alarm_page.queue_rows(found.rows, session, alarm_page.query_of(queue))
        out["before"] = found.before
    return out


def _with_alarms(tiles: list[dict], summary: dict) -> None:
    """Each tile's open alarms as ``summary`` (an ``alarms`` message made after the tiles) has them."""
    by_door = {(d["site"], d["door"]): d for d in summary["doors"]}
    for t in tiles:
        d = by_door.get((t["site"], t["door"]))
        t["alarms"], t["alarm_text"] = (d["types"], d["text"]) if d else ({}, "")
        t["open_alarms"] = sum(t["alarms"].values())


def _wakes_alarms(row: queries.StreamRow) -> bool:
    return row.shown.get("category") == "alarm" or row.shown.get("type") in answers.TYPES


def event_stream(request: Request, station: Station, session: Session, *, token: str) -> StreamingResponse:
    after = _start_id(request, station)
    want_doors = request.query_params.get("doors") == "1"
    queue = (search.parse(request.query_params, station.now().date(), dates_optional=True)
             if request.query_params.get("queue") == "1" else None)

    async def messages():
        nonlocal after
        yield "retry: 1000\n\n"
        sent_doors = sent_alarms = None
        last_out = last_check = time.monotonic()
        next_tiles = next_alarms = alarms_at = began = 0.0
        making: Future | None = None  # the tiles being made
        while not station.stopping.is_set():
            rows = await anyio.to_thread.run_sync(queries.events_after, station.store, after)
            for r in rows:
                e = r.shown
                yield _message({"site": r.site, "door": r.door, "epoch": r.epoch, "seq": e.get("seq"),
                                "type": e.get("type"), "category": e.get("category"),
                                "alarm": e.get("category") == "alarm" and not answers.is_end(r.event),
                                "sound": alarm_page.sound(e.get("type")),
                                "cells": pages.event_cells(e)}, event="event", id=r.id)
                after = r.id
            if any(_wakes_alarms(r) for r in rows):
                next_alarms = min(next_alarms, alarms_at + ALARMS_AT_MOST_S)
            if time.monotonic() >= next_alarms:
                alarms_at = time.monotonic()
                next_alarms = alarms_at + ALARMS_EVERY_S
                summary = await anyio.to_thread.run_sync(alarm_summary, station, session, queue)
                if summary != sent_alarms:
                    yield _message(summary, event="alarms")
                    sent_alarms = summary
                    last_out = time.monotonic()
            if want_doors and making is None and time.monotonic() >= next_tiles:
                began = time.monotonic()
                making = TILE_MAKERS.submit(door_tiles, station, session)  # events and alarms go on meanwhile
            if making is not None and making.done():
                tiles, making = making.result(), None
                next_tiles = time.monotonic() + max(TILES_EVERY_S, TILES_SHARE * (time.monotonic() - began))
                if sent_alarms is not None and alarms_at > began:  # the alarms sent since are newer
                    _with_alarms(tiles, sent_alarms)
                doors = {"broker_connected": station.broker_connected, "doors": tiles}
                if doors != sent_doors:
                    yield _message(doors, event="doors")
                    sent_doors = doors
                    last_out = time.monotonic()
            now = time.monotonic()
            if rows:
                last_out = now
            elif now - last_out > KEEPALIVE_S:
                yield ": keep-alive\n\n"
                last_out = now
            if now - last_check > SESSION_RECHECK_S:
                last_check = now
                alive = await anyio.to_thread.run_sync(accounts.find_session, station.store, token, station.now(),
                                                       station.session_idle_s)
                if alive is None:
                    return
            await anyio.sleep(station.poll_s if not rows else 0)

    return StreamingResponse(messages(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
