"""Open the station's archive store for the web side and the CLI: an SQLite file or PostgreSQL.

Kept apart from :mod:`.store` (the interface) so that the interface imports neither backend and
neither backend imports a module that imports it back.
"""

from __future__ import annotations

from pathlib import Path

from firmware_py.station.archive.store import StationStore


def open_station_store(where: str | Path, *, zone: str = "Asia/Shanghai") -> StationStore:
    """The store of an archive (an SQLite file path, or ``postgresql://…``) with the station's own
    tables created (accounts, sessions, audit, acknowledgements). ``zone``: how a PostgreSQL
    store writes times it reads back."""
    from firmware_py.station.config import is_postgres

    if is_postgres(str(where)):
        from firmware_py.station.archive.store_pg import PgStationStore

        return PgStationStore(str(where), zone=zone)
    from firmware_py.station.archive.store_sqlite import SqliteStationStore

    return SqliteStationStore.open(where)
