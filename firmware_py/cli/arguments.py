"""Argument types shared by the command modules: each says what it expects when the value is wrong."""

from __future__ import annotations

import argparse
from datetime import date


def iso_date(text: str) -> date:
    """``2026-11-23`` → a date (argparse type)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-23") from None


def positive_seconds(text: str) -> float:
    """A positive number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value
