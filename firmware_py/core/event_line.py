"""Chinese and English labels for event types and denial reasons, and a one-line rendering.

Used by the simulator's printer and the supervisor's monitor, so both show the
same words for the same event.

Events reach a terminal from a broker or a database someone else wrote: every
text taken from them goes through :func:`printable` first, so a name holding a
newline, an ESC sequence or a bidi override is shown escaped instead of drawing
fake lines or rewriting the screen.
"""

from __future__ import annotations

import re

from firmware_py.core import reasons

# C0 controls (with tab, CR, LF, ESC), DEL, C1 controls, bidi embeddings/overrides/isolates and marks.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

TYPE_LABELS = {
    "access_granted": "准许通行 granted",
    "access_denied": "拒绝通行 denied",
    "passage": "通过 passage",
    "exit_button": "出门按钮 exit button",
    "screening_alarm": "安检报警 screening alarm",
    "tailgating": "尾随报警 tailgating",
    "door_forced": "强行开门 door forced",
    "door_held_open": "门长时间未关 door held open",
    "overstay": "超时滞留 overstay",
    "clock_unsynchronised": "时钟未同步 clock unsynchronised",
    "hardware_fault": "设备故障 hardware fault",
    "repeated_failures": "多次验证失败 repeated failures",
    "tamper": "防拆报警 tamper",
    "link_down": "通信中断 link down",
    "clock_drift": "时钟偏差 clock drift",
    "duress": "胁迫报警 duress",
    "controller_started": "控制器启动 controller started",
    "controller_stopped": "控制器停止 controller stopped",
    "lockdown_on": "封锁 lockdown on",
    "lockdown_off": "解除封锁 lockdown off",
    "roster_changed": "名单变更 roster changed",
    "command": "远程指令 command",
    "link_up": "通信恢复 link up",
    "roster_applied": "名单包已应用 roster applied",
    "roster_rejected": "名单包被拒 roster rejected",
    "roster_expired": "名单包已过有效期 roster expired",
}

REASON_LABELS = reasons.LABELS  # declared once, with the reasons, in core/reasons.py

DIRECTION_LABELS = {"in": "进 in", "out": "出 out"}


def printable(text: object) -> str:
    """``text`` (made a string) safe to print on a terminal as one line: control and bidi characters
    are shown as escapes (``\\x1b``, ``\\n``, ``\\u202e``) instead of being obeyed."""
    return _UNPRINTABLE.sub(_escape, str(text))


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match) -> str:
    c = m.group()
    return _NAMED_ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def _label(labels: dict, value: object) -> str:
    return labels.get(value, value) if isinstance(value, str) else str(value)


def _mapping(value: object) -> dict:
    """``value`` if it is an object, else an empty one (an event from a broker may hold anything)."""
    return value if isinstance(value, dict) else {}


def render(event: dict, *, colour: bool = False) -> str:
    """One readable line for an event: time, seq, what happened, who, why; every text from the
    event through :func:`printable`, so the line is one line whatever the event holds."""
    ts = str(event.get("ts", ""))
    time_part = ts[11:19] if len(ts) >= 19 else ts
    parts = [f"{time_part} #{event.get('seq', '?')!s:<4}", _label(TYPE_LABELS, event.get("type", "?"))]
    if event.get("direction"):
        parts.append(_label(DIRECTION_LABELS, event["direction"]))
    person = _mapping(event.get("person"))
    if person:
        parts.append(f"{person.get('person_id', '')} {person.get('name', '')} ({person.get('role', '')})")
    cred = _mapping(event.get("credential"))
    if cred:
        parts.append(f"[{cred.get('kind', '')} {cred.get('masked', '')}]")
    if event.get("reason"):
        parts.append("— " + _label(REASON_LABELS, event["reason"]))
    detail = _mapping(event.get("detail"))
    if event.get("type") == "overstay":
        persons = detail.get("persons") if isinstance(detail.get("persons"), list) else []
        parts.append(", ".join(str(_mapping(p).get("name", _mapping(p).get("person_id", ""))) for p in persons))
    elif event.get("type") in ("hardware_fault", "tamper"):
        state = detail.get("state", "") or ("active" if detail.get("active") else "cleared")
        parts.append(f"{detail.get('device', '')} {state}")
    elif event.get("type") == "command":
        parts.append(f"{detail.get('action')} {'ok' if detail.get('ok') else 'refused: ' + str(detail.get('error'))}")
    line = printable("  ".join(str(p) for p in parts if p))
    if colour and event.get("category") == "alarm":
        return f"\033[1;31m{line}\033[0m"
    if colour and event.get("type") == "access_denied":
        return f"\033[33m{line}\033[0m"
    return line
