"""What the command modules share: argument types (each says what it expects when the value is wrong)
and the configuration the common options (``--config``, ``--db``, ``--broker``) name."""

from __future__ import annotations

import argparse
from datetime import date

from firmware_py.config.schema import Config, load_config, with_overrides


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


def open_config(args: argparse.Namespace) -> Config:
    """The configuration of ``--config``, with ``--db`` and ``--broker`` overriding the file."""
    return with_overrides(load_config(args.config), database=args.db, broker=args.broker)
