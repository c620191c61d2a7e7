"""The register as the station exports it: CSV safe to open in a spreadsheet, with its digest.

The CSV starts with a UTF-8 byte-order mark (Excel on a Chinese Windows reads it as UTF-8, not GBK);
``?lang=zh`` gives Chinese headers and labels. Rows are
:func:`firmware_py.core.register.register_rows` of the archived events with ``site`` and ``door``
leading and the chain ``epoch`` after the door's columns, as ``accessctl monitor export`` writes
them for several doors (a door whose database was reset has two events with one seq, told apart by
the epoch). Rows are made from the events as the page reads them (:mod:`.shown`), so a door's
strange event is a row of ``?`` and every other row is as it was. Every cell is masked for full
resident ID numbers (:mod:`firmware_py.station.archive.masking`) and written by
:func:`firmware_py.core.register.write_csv`, the project's one formula neutraliser (OWASP).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable

from firmware_py.core.event_line import DIRECTION_LABELS, REASON_LABELS, TYPE_LABELS
from firmware_py.core.register import COLUMNS, register_rows, write_csv
from firmware_py.station.archive import masking
from firmware_py.station.web.queries import StreamRow

CSV_COLUMNS = ("site", "door", *COLUMNS, "epoch")
BOM = b"\xef\xbb\xbf"  # so a spreadsheet on a Chinese Windows reads the file as UTF-8
CHINESE_HEADERS = {"site": "场所", "door": "门", "seq": "序号", "time": "时间", "direction": "方向",
                   "person_id": "人员编号", "name": "姓名", "role": "角色", "credential_kind": "证件类型",
                   "credential": "证件号码", "decision": "事件", "reason": "原因", "screening": "安检",
                   "epoch": "链段"}
ROLE_LABELS = {"staff": "员工", "supervisor": "主管", "visitor": "访客", "inspector": "检查人员"}


def rows(events: Iterable[StreamRow]) -> list[dict]:
    """Register rows (``site``, ``door``, the door's register columns and ``epoch``; ``id``, the
    archive's id of the event, is not exported) of archived events."""
    return [{"site": r.site, "door": r.door, **row, "epoch": r.epoch, "id": r.id}
            for r in events for row in register_rows([r.shown])]


def in_chinese(rows: Iterable[dict]) -> list[dict]:
    """Register rows with the decision, direction, reason and role as their Chinese labels."""
    return [{**r, "decision": _chinese(TYPE_LABELS, r["decision"]),
             "direction": _chinese(DIRECTION_LABELS, r["direction"]), "reason": _chinese(REASON_LABELS, r["reason"]),
             "role": ROLE_LABELS.get(r["role"], r["role"])} for r in rows]


def _chinese(labels: dict[str, str], code: object) -> object:
    """The Chinese part of a bilingual label (``准许通行 granted`` -> ``准许通行``); the code when it has none."""
    label = labels.get(code) if isinstance(code, str) else None
    return label.split(" ", 1)[0] if label else code


def to_csv(table: Iterable[dict], columns: Iterable[str] = CSV_COLUMNS, headers: dict[str, str] | None = None) -> bytes:
    """``table`` as UTF-8 CSV with a byte-order mark and a header line (the column names, or their
    ``headers``): every text cell masked, then formula-safe."""
    columns = tuple(columns)
    names = tuple((headers or {}).get(c, c) for c in columns)
    out = io.StringIO(newline="")
    write_csv(({n: _masked(row.get(c)) for c, n in zip(columns, names, strict=True)} for row in table), out, names)
    return BOM + out.getvalue().encode("utf-8")


def _masked(value: object) -> object:
    return masking.mask_text(value) if isinstance(value, str) else ("" if value is None else value)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
