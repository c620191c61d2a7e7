"""The interfaces the controller core drives; the drivers implement them.

The core never imports gpiozero, serial or smartcard: it holds objects with
these methods, so the same core runs with real pins, mock pins or test doubles.
"""

from __future__ import annotations

from typing import Literal, Protocol

Pattern = Literal["idle", "granted", "denied", "alarm", "screening_wait"]
PATTERNS: tuple[str, ...] = ("idle", "granted", "denied", "alarm", "screening_wait")


class Lock(Protocol):
    """The door lock relay."""

    def release(self) -> None:
        """Let the door open (strike unlocked / maglock de-energised)."""

    def secure(self) -> None:
        """Hold the door (the lock type's secure state)."""

    @property
    def is_released(self) -> bool: ...


class Indicators(Protocol):
    """Buzzer and green/red LEDs outside and inside."""

    def show(self, pattern: Pattern, side: Literal["outside", "inside", "both"] = "both") -> None:
        """Show a named pattern; ``idle`` turns everything off."""
