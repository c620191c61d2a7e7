"""Open the station's archive for the web side and the CLI, or for the ingest: an SQLite file or PostgreSQL.

Kept apart from :mod:`.store` (the interface) so that the interface imports neither backend and
neither backend imports a module that imports it back.
"""

from __future__ import annotations

from pathlib import Path

from firmware_py.station.archive.ingest_store import IngestStore
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


def open_ingest_store(where, *, backfill: bool = True) -> IngestStore:
    """The ingest's store of an archive: an SQLite file (path, or an open
    :class:`~firmware_py.station.archive.sqlite.Archive`), or ``postgresql://…``. ``backfill``
    (SQLite): a door seen for the first time is archived from seq 1; False starts at the first seq seen."""
    from firmware_py.station.archive.sqlite import Archive
    from firmware_py.station.config import is_postgres

    if isinstance(where, Archive):
        from firmware_py.station.archive.sqlite_ingest import SqliteIngestStore

        return SqliteIngestStore(where, backfill=backfill, own=False)
    if is_postgres(str(where)):
        from firmware_py.station.archive.pg_ingest import PgIngestStore

        return PgIngestStore(str(where))
    from firmware_py.station.archive.sqlite_ingest import SqliteIngestStore

    return SqliteIngestStore(Archive(Path(where)), backfill=backfill, own=True)
