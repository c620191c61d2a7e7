"""The entry register (article 15, 26-27): the access events of a period as CSV or JSON lines.

Rows come from the event log itself, so the register and the tamper-evident
log can never disagree. Only masked credentials are in the log, so only
masked credentials can be exported.
"""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, time, timedelta
from typing import IO, Iterable, Iterator
from zoneinfo import ZoneInfo

REGISTER_TYPES = ("access_granted", "access_denied", "passage", "exit_button", "screening_alarm", "tailgating")
COLUMNS = ("seq", "time", "direction", "person_id", "name", "role", "credential_kind", "credential",
           "decision", "reason", "screening")


def register_rows(events: Iterable[dict]) -> Iterator[dict]:
    for e in events:
        if e["type"] not in REGISTER_TYPES:
            continue
        person = e.get("person") or {}
        cred = e.get("credential") or {}
        detail = e.get("detail") or {}
        yield {
            "seq": e["seq"],
            "time": e["ts"],
            "direction": e.get("direction") or "",
            "person_id": person.get("person_id", ""),
            "name": person.get("name", ""),
            "role": person.get("role", ""),
            "credential_kind": cred.get("kind", ""),
            "credential": cred.get("masked", ""),
            "decision": e["type"],
            "reason": e.get("reason") or "",
            "screening": detail.get("screening", ""),
        }


def period(from_date: date, to_date: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """From the start of ``from_date`` to the end of ``to_date`` in the site's zone."""
    return datetime.combine(from_date, time(0), tz), datetime.combine(to_date + timedelta(days=1), time(0), tz)


def write_register(rows: Iterable[dict], out: IO[str], fmt: str) -> int:
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            n += 1
    elif fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    else:
        raise ValueError(f"unknown register format {fmt!r}: csv or jsonl")
    return n
