"""A signed roster bundle applied to the door's roster, all or nothing, with its event.

The bundle is the site's whole roster: after :func:`apply_bundle` the door's persons and badges
are exactly the bundle's rows, except that a person revoked at this door stays revoked (as an
import leaves them: only ``accessctl roster reinstate`` lifts a revocation). It is built beside
the live tables in short steps and swapped in by one transaction that also appends
``roster_applied`` and records the applied bundle (:mod:`firmware_py.storage.roster_import`'s
machinery), so the door keeps deciding, and writing, during the apply; the log and the roster
never disagree. A refusal is :func:`record_rejection` (``roster_rejected`` with the reason), and
a bundle past its validity, still in use, raises :func:`warn_if_expired` once a day.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable
from datetime import datetime

import sqlite_utils

from firmware_py.core.events import redact_id_numbers
from firmware_py.errors import BundleError
from firmware_py.link.roster_bundle import Manifest, check_row, read_payload
from firmware_py.storage.db import get_meta, set_meta
from firmware_py.storage.eventstore import EventStore
from firmware_py.storage.roster_csv import STORED_COLUMNS
from firmware_py.storage.roster_import import IMPORT_ATTEMPTS, TARGET_HOLD_S, _RosterMoved, _staging

log = logging.getLogger(__name__)

APPLIED = "roster_bundle"  # meta: the applied bundle's version, times and schedules
WARNED = "roster_bundle_expired_warned"  # meta: the site's date of the last roster_expired event
FIRST_BATCH = 200  # rows in the first write step; later steps are sized from its time (TARGET_HOLD_S)
MAX_LISTED = 20  # person ids named in the event


def applied(db: sqlite_utils.Database) -> dict | None:
    """The applied bundle: ``version``, ``made_at``, ``valid_until``, ``applied_at``, ``sha256``, ``schedules``."""
    return get_meta(db, APPLIED)


def applied_version(db: sqlite_utils.Database) -> int:
    return (applied(db) or {}).get("version", 0)


def apply_bundle(db: sqlite_utils.Database, store: EventStore, manifest: Manifest, payload: bytes, *,
                 schedule_groups: Iterable[str]) -> dict:
    """Make the door's roster the bundle's; return the ``roster_applied`` event.

    :class:`BundleError` (nothing changed) for a malformed row or a person id, ID hash or
    badge given twice; the caller records it (:func:`record_rejection`).
    """
    if db.conn.in_transaction:
        raise RuntimeError("apply_bundle runs its own short transactions; call it outside a transaction")
    groups = tuple(schedule_groups)
    with _staging(db) as stage:
        for attempt in range(1, IMPORT_ATTEMPTS + 1):
            start_seq = store.last_seq()
            header, rows = read_payload(manifest, payload)
            stage._empty_next_tables()
            _build(stage, rows, groups)
            summary = _compare(db)
            detail = {"version": manifest.version, "made_at": header.made_at, "valid_until": header.valid_until,
                      "sha256": manifest.sha256, "count": header.count, **summary}
            record = {"version": manifest.version, "made_at": header.made_at, "valid_until": header.valid_until,
                      "sha256": manifest.sha256, "count": header.count, "schedules": header.schedules,
                      "applied_at": store.clock.now().isoformat(timespec="seconds")}

            def append(detail=detail, record=record) -> dict:
                set_meta(db, APPLIED, record)
                return store.append("system", "roster_applied", detail=detail)

            try:
                event = stage.swap(start_seq, append)
            except _RosterMoved:
                log.info("roster bundle: the roster changed while version %d was applied; again (%d)",
                         manifest.version, attempt)
                continue
            break
        else:
            raise BundleError("malformed", "the roster kept changing while the bundle was applied; it is tried again "
                                           "when it arrives next")
    log.info("roster bundle version %d applied: %d persons (%d added, %d removed)", manifest.version, header.count,
             summary["added"], summary["removed"])
    return event


def _build(stage, rows, groups: tuple[str, ...]) -> None:
    """The rows into ``persons_next``/``badges_next`` in short write steps; then the local revocations and PINs."""
    conn = stage.conn
    persons_sql = (f"INSERT INTO main.persons_next ({', '.join(STORED_COLUMNS)}) "
                   f"VALUES ({', '.join('?' * len(STORED_COLUMNS))})")
    badges_sql = "INSERT INTO main.badges_next (uid, person_id) VALUES (?, ?)"
    batch: list[tuple[int, tuple, tuple]] = []
    size = FIRST_BATCH

    def flush() -> None:
        nonlocal size
        t0 = time.perf_counter()
        try:
            with stage._step():
                conn.executemany(persons_sql, [stored for _, stored, _ in batch])
                conn.executemany(badges_sql, [(uid, stored[0]) for _, stored, badges in batch for uid in badges])
        except sqlite3.IntegrityError:
            raise _duplicate(stage, batch) from None
        spent = time.perf_counter() - t0
        size = max(50, min(8 * FIRST_BATCH, int(len(batch) * TARGET_HOLD_S / max(spent, 1e-4))))
        batch.clear()

    for n, row in enumerate(rows, 1):
        stored, badges = check_row(row, n, schedule_groups=groups)
        batch.append((n, stored, badges))
        if len(batch) >= size:
            flush()
    if batch:
        flush()
    with stage._step():
        conn.execute("UPDATE main.persons_next SET status = 'revoked', revoked_at = r.revoked_at, "
                     "revoked_reason = r.revoked_reason FROM (SELECT person_id, revoked_at, revoked_reason "
                     "FROM main.persons WHERE status = 'revoked') AS r WHERE persons_next.person_id = r.person_id")
        # PINs are set at the door (`accessctl roster pin set`); a bundle, which carries none, keeps them.
        conn.execute("UPDATE main.persons_next SET pin_hash = p.pin_hash, duress_pin_hash = p.duress_pin_hash "
                     "FROM (SELECT person_id, pin_hash, duress_pin_hash FROM main.persons "
                     "WHERE pin_hash IS NOT NULL OR duress_pin_hash IS NOT NULL) AS p "
                     "WHERE persons_next.person_id = p.person_id")


def _duplicate(stage, batch) -> BundleError:
    """Which row of a refused step repeats a person id, ID hash or badge (of an earlier step or of
    this one, which was rolled back): named for the event."""
    q = stage.conn.execute
    pids: set[str] = set()
    hashes: set[str] = set()
    uids: set[str] = set()
    for n, stored, badges in batch:
        pid, id_hash = stored[0], stored[5]
        if pid in pids or q("SELECT 1 FROM main.persons_next WHERE person_id = ?", (pid,)).fetchone():
            return BundleError("malformed", f"row {n}: person id {pid} is given twice")
        if id_hash in hashes or q("SELECT 1 FROM main.persons_next WHERE id_hash = ?", (id_hash,)).fetchone():
            return BundleError("malformed", f"row {n} ({pid}): ID number {stored[6]} is given twice")
        for uid in badges:
            if uid in uids or q("SELECT 1 FROM main.badges_next WHERE uid = ?", (uid,)).fetchone():
                return BundleError("malformed", f"row {n} ({pid}): badge {uid} is given twice")
        pids.add(pid), hashes.add(id_hash), uids.update(badges)
    return BundleError("malformed", "a person id, ID number or badge is given twice")


def _compare(db: sqlite_utils.Database) -> dict:
    """Who the bundle adds, removes and leaves revoked, against the live roster (read only)."""
    q = db.execute
    added = q("SELECT count(*) FROM main.persons_next n WHERE NOT EXISTS "
              "(SELECT 1 FROM main.persons p WHERE p.person_id = n.person_id)").fetchone()[0]
    removed = [pid for pid, in q("SELECT person_id FROM main.persons p WHERE NOT EXISTS "
                                 "(SELECT 1 FROM main.persons_next n WHERE n.person_id = p.person_id) "
                                 "ORDER BY person_id")]
    revoked = [pid for pid, in q("SELECT person_id FROM main.persons_next WHERE status = 'revoked' "
                                 "ORDER BY person_id")]
    return {"added": added, "removed": len(removed), "removed_ids": removed[:MAX_LISTED],
            "still_revoked": revoked[:MAX_LISTED], "still_revoked_count": len(revoked)}


def record_rejection(store: EventStore, error: BundleError, manifest: Manifest | None = None) -> dict:
    """Store ``roster_rejected`` with the reason and what exactly was wrong (ID-number-like text masked)."""
    detail = {"reason": error.reason, "message": redact_id_numbers(str(error))[:300]}
    if manifest is not None:
        detail.update(version=manifest.version, site=redact_id_numbers(manifest.site)[:64])
    log.warning("roster bundle refused (%s): %s", error.reason, detail["message"])
    return store.append("system", "roster_rejected", detail=detail)


def warn_if_expired(store: EventStore, now: datetime) -> dict | None:
    """``roster_expired`` once a (site) day while the applied bundle is past its validity; it stays in use."""
    db = store.db
    record = applied(db)
    if not record or datetime.fromisoformat(record["valid_until"]) > now:
        return None
    today = now.date().isoformat()
    if get_meta(db, WARNED) == today:
        return None
    with store.batch():
        if get_meta(db, WARNED) == today:
            return None
        set_meta(db, WARNED, today)
        event = store.append("system", "roster_expired", detail={
            "version": record["version"], "valid_until": record["valid_until"],
            "message": "the station's roster bundle is past its validity; the door keeps using it until a newer "
                       "one arrives"})
    log.warning("roster bundle version %s is past its validity (%s); still in use", record["version"],
                record["valid_until"])
    return event
