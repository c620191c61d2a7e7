"""The register as the station exports it: CSV safe to open in a spreadsheet, with its digest.

Rows are :func:`firmware_py.core.register.register_rows` of the archived events with ``site`` and
``door`` leading and the chain ``epoch`` after the door's columns, as ``accessctl monitor export``
writes them for several doors (a door whose database was reset has two events with one seq, told
apart by the epoch). Rows are made from the events as the page reads them (:mod:`.shown`), so a
door's strange event is a row of ``?`` and every other row is as it was. Every cell is masked for
full resident ID numbers (:mod:`firmware_py.station.archive.masking`) and written by
:func:`firmware_py.core.register.write_csv`, the project's one formula neutraliser (OWASP).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable

from firmware_py.core.register import COLUMNS, register_rows, write_csv
from firmware_py.station.archive import masking
from firmware_py.station.web.queries import StreamRow

CSV_COLUMNS = ("site", "door", *COLUMNS, "epoch")


def rows(events: Iterable[StreamRow]) -> list[dict]:
    """Register rows (``site``, ``door``, the door's register columns and ``epoch``) of archived events."""
    return [{"site": r.site, "door": r.door, **row, "epoch": r.epoch}
            for r in events for row in register_rows([r.shown])]


def to_csv(table: Iterable[dict], columns: Iterable[str] = CSV_COLUMNS) -> bytes:
    """``table`` as UTF-8 CSV with a header: every text cell masked, then formula-safe."""
    columns = tuple(columns)
    out = io.StringIO(newline="")
    write_csv(({c: _masked(row.get(c)) for c in columns} for row in table), out, columns)
    return out.getvalue().encode("utf-8")


def _masked(value: object) -> object:
    return masking.mask_text(value) if isinstance(value, str) else ("" if value is None else value)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
