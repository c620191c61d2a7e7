"""The door's side of the station's roster: bundles from the broker checked and applied off the loop.

paho's network thread only hands each message on the roster topics to :meth:`RosterReceiver.offer`
(it returns at once). One thread of ours, with its own database connection, checks every message
(:mod:`firmware_py.link.roster_bundle`), puts chunks together under their manifest, and applies a
complete bundle (:func:`firmware_py.storage.roster_bundle.apply_bundle`) or records why not. The
door's loop goes on deciding meanwhile on the roster it has. The same thread raises
``roster_expired`` once a day while the applied bundle is past its validity.

The broker keeps the bundle retained and hands it again at every reconnect: the bundle already
applied is skipped without an event, and a refused message is recorded once per run, not at
every reconnect.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Callable

from firmware_py.config.schema import Config
from firmware_py.core.clock import Clock
from firmware_py.errors import BundleError
from firmware_py.link import roster_bundle as rb
from firmware_py.link.roster_keys import DoorKeys
from firmware_py.storage import roster_bundle as applying
from firmware_py.storage.door_database import open_store

log = logging.getLogger(__name__)

QUEUED_BYTES = 64 * 1024 * 1024  # waiting for the thread; more is dropped (the broker hands the retained copies again)
EXPIRY_CHECK_S = 60.0
REMEMBERED = 256  # refused messages not recorded again this run


class RosterReceiver:
    """Checks and applies the site's roster bundles for one door.

    ``keys``: the station's public key and the site roster key (:func:`~.roster_keys.door_keys`);
    ``stored``: called after an event was stored (the link's sender publishes it); ``applied``:
    called with the new version after a bundle was applied (the status says it).
    """

    def __init__(self, cfg: Config, keys: DoorKeys, *, clock: Clock, stored: Callable[[], None] = lambda: None,
                 applied: Callable[[int], None] = lambda version: None):
        self.cfg, self.keys, self.clock = cfg, keys, clock
        self._stored, self._applied = stored, applied
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._queued_bytes = 0
        self._queued_lock = threading.Lock()
        self._store = open_store(cfg, clock=clock)
        self.version = applying.applied_version(self._store.db)
        self._sha256 = (applying.applied(self._store.db) or {}).get("sha256")
        self._assembler = rb.Assembler()
        self._refused: dict[str, None] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="roster-bundle", daemon=True)
        self._thread.start()

    def offer(self, payload: bytes) -> None:
        """A message from a roster topic (paho's thread): queued, never waited on."""
        with self._queued_lock:
            if self._queued_bytes + len(payload) > QUEUED_BYTES:
                log.warning("roster bundle messages arrive faster than they are checked; one of %d bytes dropped "
                            "(the broker hands it again at the next connection)", len(payload))
                return
            self._queued_bytes += len(payload)
        self._queue.put(bytes(payload))

    def close(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(10)
        self._store.db.conn.close()

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        self._check_expiry()
        while not self._stopping.is_set():
            try:
                payload = self._queue.get(timeout=EXPIRY_CHECK_S)
            except queue.Empty:
                self._check_expiry()
                continue
            if payload is None:
                break
            with self._queued_lock:
                self._queued_bytes -= len(payload)
            try:
                self.handle(payload)
            except Exception:  # storage trouble or a bug: the door keeps its roster, this thread goes on
                log.exception("roster bundle: handling a message failed; the roster is unchanged")

    def _check_expiry(self) -> None:
        try:
            if applying.warn_if_expired(self._store, self.clock.now()):
                self._stored()
        except Exception:
            log.exception("roster bundle: the validity check failed")

    def handle(self, payload: bytes) -> None:
        """Check one message; apply the bundle it completes, or record why it is refused."""
        if not payload:
            return  # an empty retained message: a chunk topic cleared by the station
        digest = hashlib.sha256(payload).hexdigest()
        if digest in self._refused:
            return
        manifest = None
        try:
            item = rb.read_message(payload, self.keys.public_key)
            if isinstance(item, rb.Manifest):
                manifest = item
                if item.version == self.version and item.sha256 == self._sha256 or item.sha256 in self._refused:
                    return  # the bundle this door has (or refused), handed again by the broker
                rb.check_manifest(item, site=self.cfg.site.site, key=self.keys.key_id,
                                  applied_version=self.version, now=self.clock.now())
            elif item.site != self.cfg.site.site or item.version <= self.version:
                return  # a chunk of a bundle this door does not take: its manifest says why, once
            done = self._assembler.add(item)
            if done is None:
                return
            manifest, data = done
            rb.check_manifest(manifest, site=self.cfg.site.site, key=self.keys.key_id,
                              applied_version=applying.applied_version(self._store.db), now=self.clock.now())
            applying.apply_bundle(self._store.db, self._store, manifest, data,
                                  schedule_groups=self.cfg.calendar.schedules)
        except BundleError as exc:
            self._refused[digest] = None
            if manifest is not None:
                self._refused[manifest.sha256] = None  # the bundle, whichever of its messages comes again
            while len(self._refused) > REMEMBERED:
                self._refused.pop(next(iter(self._refused)))
            applying.record_rejection(self._store, exc, manifest)
            self._stored()
            return
        self.version, self._sha256 = manifest.version, manifest.sha256
        self._stored()
        self._applied(manifest.version)
