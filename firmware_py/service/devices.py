"""The door's devices asked one question each outside the running service (``accessctl doctor``).

The service is the one room that imports ``drivers/``; what the doctor needs from a driver
it asks here, so the doctor stays a reader of the machine and never a user of the drivers.
"""

from __future__ import annotations


def pcsc_reader_names() -> list[str] | None:
    """The reader names pcscd lists ([] when none); None when the PC/SC service does not answer.

    Raises ImportError when pyscard is not installed (it is imported only when asked).
    """
    from drivers.badge_reader import list_readers

    return list_readers()
