"""When to ask a door for a replay, for both ingests (DESIGN.md: the station asks a door for a replay
when it sees a gap; ``{"id", "action": "replay", "from_seq"}`` on the door's ``cmd`` topic).

A pure decision over plain numbers (monotonic seconds), so the SQLite and the PostgreSQL ingest back
off the same way: after a request, the next one for the same hole waits one interval, then two,
four … (``interval_s * 2 ** (sent - 1)``); no request while the door's events are still arriving
(its sequence advanced within one interval) unless the hole was just found; none while the door
cannot answer or the broker is still handing over a backlog (``held``); after ``max_requests``
unanswered requests the ingest gives up on that hole (a forged far-future seq cannot make it ask
for ever, each request adding a ``command`` event at the door).

A door publishes its urgent events (a ``duress`` alarm) ahead of its outbox's backlog
(docs/contracts.md, the urgent lane), so such a seq may arrive above a hole that the backlog
behind it is about to fill: :func:`sent_ahead` tells the ingests to count it as the door's
sequence moving (wait one interval, then ask as for any hole) rather than as a hole just found.
"""

from __future__ import annotations

import uuid
from enum import Enum

from firmware_py.core.events import URGENT_TYPES
from firmware_py.link.signed_commands import command_payload


class Replay(Enum):
    ASK = "ask"
    WAIT = "wait"
    GIVE_UP = "give_up"


def replay_decision(*, sent: int, now: float, last_request_at: float, advanced_at: float, interval_s: float,
                    max_requests: int, first: bool = False, held: bool = False) -> Replay:
    """Whether to ask for a hole now.

    ``sent``: requests already made for this hole; ``last_request_at``: the last request to this door;
    ``advanced_at``: when the door's archived sequence last grew; ``first``: the hole was just found
    (ask without waiting for the sequence to settle); ``held``: the door cannot answer now (offline)
    or a backlog is arriving that may close the hole by itself.
    """
    if now - last_request_at < interval_s * 2 ** max(0, sent - 1):
        return Replay.WAIT
    if not first and now - advanced_at < interval_s:
        return Replay.WAIT
    if held:
        return Replay.WAIT
    return Replay.GIVE_UP if sent >= max_requests else Replay.ASK


def sent_ahead(event: dict, contiguous: int) -> bool:
    """Whether ``event`` is an urgent one the door sent ahead of its backlog, above the door's archived
    sequence (``contiguous``: every seq up to it is archived): the hole below it is most likely that
    backlog, still on its way."""
    return event.get("type") in URGENT_TYPES and event["seq"] > contiguous + 1


def replay_request(from_seq: int, asker: str, *, site: str, door: str, key=None) -> tuple[str, bytes]:
    """(id, payload) of a replay command from ``asker`` (``monitor``, ``station``) to ``site/door``, with
    a fresh id; signed for that door when the station has its ``key`` (as the page's commands are)."""
    request_id = f"{asker}-{uuid.uuid4().hex[:12]}"
    command = {"id": request_id, "action": "replay", "from_seq": from_seq}
    return request_id, command_payload(command, site=site, door=door, key=key)
