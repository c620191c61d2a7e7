"""The register as the station exports it: CSV safe to open in a spreadsheet, with its digest.

Rows are :func:`firmware_py.register.register_rows` of the archived events with ``site`` and
``door`` leading, as ``accessctl monitor export`` writes them for several doors. Every cell is
masked for full resident ID numbers and neutralised against formula injection: a cell starting
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``.
"""

from __future__ import annotations

import csv
import hashlib
import io
from typing import Iterable

from ..monitor_archive import redact
from ..register import COLUMNS, register_rows

CSV_COLUMNS = ("site", "door", *COLUMNS)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: object) -> str:
    text = redact("" if value is None else str(value))
    return "'" + text if text.startswith(_FORMULA_START) else text


def rows(events: Iterable[dict]) -> list[dict]:
    """Register rows (``site``, ``door`` and the door's register columns) of ``events``."""
    return [{"site": e.get("site", ""), "door": e.get("door", ""), **r} for e in events for r in register_rows([e])]


def to_csv(register: list[dict]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in register:
        writer.writerow([neutralise(row.get(c, "")) for c in CSV_COLUMNS])
    return out.getvalue().encode("utf-8")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
