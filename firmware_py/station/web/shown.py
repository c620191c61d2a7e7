"""What the page reads of a door's stored values, with the types it expects: unknown stays unknown.

A door's events, status and occupancy are JSON a door wrote, and any door may be stolen, miswired
or running old firmware: a field may hold any JSON value, or the stored text may not be JSON at
all. The page never reads them directly. :func:`event` gives an event's fields as text (or an
integer ``seq``), :func:`status_fields` a status's tile texts, :func:`people_inside` an
occupancy's people; a value of the wrong type is ``?`` (unknown), a long text is cut. So one door's
strange row shows as strange in its own row, and every other door's rows as they are
(DESIGN.md "The supervision station": one door spoils only its own row).

Values arrive already masked (:mod:`firmware_py.station.archive.masking`).
"""

from __future__ import annotations

from typing import Any

UNKNOWN = "?"
MAX_TEXT = 200  # characters of one field the page shows
MAX_FIELD_KEYS = 20  # of an event's ``detail``
MAX_PEOPLE = 500  # of one room's occupancy

EVENT_TEXTS = ("ts", "site", "door", "category", "type", "direction", "reason")


def text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A text field: the text (cut to ``limit``, ``…`` marking the cut), None when absent, ``?`` when not text."""
    if value is None:
        return None
    if not isinstance(value, str):
        return UNKNOWN
    return value if len(value) <= limit else value[:limit] + "…"


def _scalar(value: Any) -> object:
    if isinstance(value, str):
        return text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return UNKNOWN


def _record(value: Any, names: tuple[str, ...]) -> dict | None:
    """A nested object of named text fields (``person``, ``credential``): ``""`` for a missing field."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return {names[0]: UNKNOWN, **{n: "" for n in names[1:]}}
    return {n: text(value.get(n)) or "" for n in names}


def _detail(value: Any) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        return {"value": UNKNOWN}
    return {text(str(k), 40): _scalar(v) for k, v in list(value.items())[:MAX_FIELD_KEYS]}


def event(stored: dict) -> dict:
    """The fields of a stored event the page reads, each of the type it expects (see the module)."""
    seq = stored.get("seq")
    shown = {k: text(stored.get(k)) for k in EVENT_TEXTS}
    shown["seq"] = seq if seq is None or (isinstance(seq, int) and not isinstance(seq, bool)) else UNKNOWN
    shown["person"] = _record(stored.get("person"), ("person_id", "name", "role"))
    shown["credential"] = _record(stored.get("credential"), ("kind", "masked"))
    shown["detail"] = _detail(stored.get("detail"))
    if "unreadable" in stored:
        shown["unreadable"] = text(stored["unreadable"])
    return shown


def label(value: Any, labels: dict[str, str], limit: int = 80) -> str:
    """A status word by its label (an unknown word as it is, cut); ``?`` when absent or not a word."""
    if not isinstance(value, str):
        return UNKNOWN
    return labels.get(value) or text(value, limit) or UNKNOWN


def count(value: Any) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else UNKNOWN


def faults(value: Any, limit: int = 200) -> str | None:
    """The faults as one text; None for none; ``?`` when neither a list nor a text."""
    if value is None or value == []:
        return None
    if isinstance(value, str):
        return text(value, limit)
    if not isinstance(value, list):
        return UNKNOWN
    return text(", ".join(v if isinstance(v, str) else UNKNOWN for v in value[:20]), limit)


def people_inside(occupancy: Any) -> list[dict] | None:
    """Who is inside: ``person_id``, ``name``, ``role``, ``since`` as text (``person_id`` None when it is
    unknown); [] for nobody, None when the occupancy says nothing readable."""
    if occupancy is None:
        return []
    people = occupancy.get("inside") if isinstance(occupancy, dict) else occupancy
    if people is None:
        return []
    if not isinstance(people, list):
        return None
    out = []
    for p in people[:MAX_PEOPLE]:
        if not isinstance(p, dict):
            continue
        pid = p.get("person_id")
        out.append({"person_id": text(pid) if isinstance(pid, str) and pid else None,
                    **{k: text(p.get(k)) or "" for k in ("name", "role", "since")}})
    return out
