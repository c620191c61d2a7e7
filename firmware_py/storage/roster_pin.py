"""The roster's PINs (GB/T 37078 §6.3-6.4): slow salted hashes in two columns of ``persons``, never a PIN.

``pin_hash`` is the hash (:func:`firmware_py.core.pin.hash_pin`) of the PIN a
person enters after their card where the door asks for one; ``duress_pin_hash``
that of their duress PIN, a second PIN of their own that opens the door like
the first and raises the ``duress`` alarm. Both are set with
``accessctl roster pin set PERSON [--duress]``
(:func:`firmware_py.storage.roster.set_pin`); a roster import keeps them (the
file has no PIN columns). A database made before PINs existed is given the
two columns when it is opened (:func:`add_pin_columns`).
"""

from __future__ import annotations

import sqlite3

PIN_COLUMNS = ("pin_hash", "duress_pin_hash")


def add_pin_columns(conn: sqlite3.Connection) -> None:
    """Give an older database's ``persons`` the PIN columns (NULL: no PIN set); nothing when they exist."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(persons)")}
    for column in PIN_COLUMNS:
        if column not in have:
            conn.execute(f"ALTER TABLE persons ADD COLUMN {column} TEXT")
