"""Every denial reason the door can store, declared once, with its Chinese and English label.

The vocabulary check (:data:`firmware_py.core.events.REASONS`), the labels the
monitor, the simulator and the station show
(:data:`firmware_py.core.event_line.REASON_LABELS`) and the policy's order of
precedence (:mod:`firmware_py.core.policy`) all read this table; a reason is
added here or nowhere. Each one is decided in :mod:`firmware_py.core.policy`:
``BY_POLICY`` ones by :func:`~firmware_py.core.policy.decide` when the
credential is read, the others by the policy's functions for what the door
sees around the decision (a held reader, a busy doorway, the gate's verdict).
"""

from __future__ import annotations

# name -> label ("中文 English"), in the order DESIGN.md lists them
LABELS: dict[str, str] = {
    "unknown_credential": "未登记证件 unknown credential",
    "invalid_id_number": "身份证号无效 invalid ID number",
    "revoked": "已撤销授权 revoked",
    "not_yet_valid": "授权未生效 not yet valid",
    "expired": "授权已过期 expired",
    "review_missing": "未经政审 review missing",
    "training_incomplete": "培训学时不足 training incomplete",
    "commitment_missing": "未签保密承诺 commitment missing",
    "outside_working_hours": "非工作时间 outside working hours",
    "non_working_day": "非工作日 non-working day",
    "anti_passback": "防反潜回 anti-passback",
    "escort_required": "需要陪同 escort required",
    "lockdown": "封锁中 lockdown",
    "metal_detected": "检出金属 metal detected",
    "tailgating": "尾随 tailgating",
    "screening_timeout": "安检超时 screening timeout",
    "clock_unsynchronised": "时钟未同步 clock unsynchronised",
    "reader_locked": "读卡器锁定 reader locked",
    "door_busy": "他人通行中 door busy",
    "screening_unavailable": "安检门不可用 screening unavailable",
    "pin_incorrect": "密码错误 PIN incorrect",
    "pin_timeout": "密码输入超时 PIN timeout",
}

REASONS: tuple[str, ...] = tuple(LABELS)

# Decided before the policy looks at the person: the reader is held, or someone else is in the doorway.
BEFORE_POLICY: tuple[str, ...] = ("reader_locked", "door_busy")
# Decided by the gate's verdict on a walk-through (or its absence), after a credential was let through.
AFTER_SCREENING: tuple[str, ...] = ("metal_detected", "tailgating", "screening_timeout", "screening_unavailable")
# Decided on the PIN asked for after a credential the policy allowed (GB/T 37078 §6.3).
AFTER_PIN: tuple[str, ...] = ("pin_incorrect", "pin_timeout")
