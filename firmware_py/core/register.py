"""The entry register (article 15, 26-27): the access events of a period as CSV or JSON lines.

Rows come from the event log itself, so the register and the tamper-evident
log can never disagree. Only masked credentials are in the log, so only
masked credentials can be exported.

CSV is opened in spreadsheets, which run a cell that starts with ``=``, ``+``,
``-`` or ``@`` (or a tab or carriage return before one) as a formula: names come
from rosters and credentials from whatever card was held to the reader, so every
CSV cell goes through :func:`spreadsheet_safe` (OWASP's CSV-injection rule), in
:func:`write_csv`, which both the door's ``log export`` and the supervisor's
``monitor export`` use. JSON lines are data for programs and stay verbatim.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from typing import IO
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


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a string starting with ``= + - @``, tab or CR gets a
    leading single quote (OWASP); numbers and other strings are returned unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(rows: Iterable[dict], out: IO[str], fieldnames: Iterable[str]) -> int:
    """Write ``rows`` as CSV with a header line, every cell through :func:`spreadsheet_safe`;
    return the number of rows."""
    writer = csv.DictWriter(out, fieldnames=tuple(fieldnames))
    writer.writeheader()
    n = 0
    for row in rows:
        writer.writerow({k: spreadsheet_safe(v) for k, v in row.items()})
        n += 1
    return n


def write_register(rows: Iterable[dict], out: IO[str], fmt: str, columns: Iterable[str] = COLUMNS) -> int:
    """Write register rows as ``csv`` (formula-safe) or ``jsonl``; return the number of rows."""
    n = 0
    if fmt == "csv":
        n = write_csv(rows, out, columns)
    elif fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    else:
        raise ValueError(f"unknown register format {fmt!r}: csv or jsonl")
    return n
