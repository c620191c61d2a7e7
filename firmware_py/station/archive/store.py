"""The storage interface of the station's web side (:mod:`.open` picks a backend).

The web app (:mod:`.web`, :mod:`.pages`, :mod:`.stream`) and the modules of its jobs
(:mod:`.accounts`, :mod:`.audit`, :mod:`.alarms`, :mod:`.queries`, :mod:`.chain`) talk to the
archive only through a :class:`StationStore`: the station's own tables (accounts, sessions,
acknowledgements, the alarms their door closed with a state event, audit) and the page's reads
(doors, events by date, the live stream's cursor, alarms, each door's chain). Two backends
implement it, each with all of its SQL, placeholders and dialect in its own module:

- :class:`~firmware_py.station.archive.store_sqlite.SqliteStationStore` over the SQLite archive file
  (the monitor's :class:`~firmware_py.station.archive.sqlite.Archive` writes events on its own connection);
- :class:`~firmware_py.station.archive.store_pg.PgStationStore` over a PostgreSQL archive
  (:mod:`.pg`, written by :mod:`.pg_ingest`; its own tables in :mod:`.schema_pg`).

Rows come back as plain tuples of Python values: times as ISO 8601 text, payloads as bytes,
JSON documents (status, occupancy, audit detail) as text. What a door stored is returned as it is
stored, whatever it holds: the web side masks and reads it (:mod:`.masking`, :mod:`..web.shown`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

AckOutcome = Literal["ok", "not_an_alarm", "already_acknowledged"]
PAYLOAD_START = 4096  # bytes of a refused or conflicting payload read for the admin's page


@dataclass(frozen=True)
class EventSearch:
    """What a search of the archive asks for (:meth:`StationStore.search_events`).

    ``start``/``end``: the window [start, end) the event's ``ts`` falls in (None: open on that
    side, as the alarm queue is without dates); ``types``: any of these
    event types (none: every type); ``text``: lower-case text found in the person's id, name or
    organisation (any part); ``person_id``: exactly this person id."""

    start: datetime | None
    end: datetime | None
    site: str | None = None
    door: str | None = None
    types: tuple[str, ...] = ()
    text: str | None = None
    person_id: str | None = None


@dataclass(frozen=True)
class AccountRow:
    name: str
    role: str
    created_at: str
    last_login: str | None
    disabled: bool


@dataclass(frozen=True)
class PublishedRoster:
    """The roster bundle this station last published for a site: its version, what it was made of and
    its rows in bundle form (masked ID number and keyed hash, never the number), compressed."""

    site: str
    version: int
    published_at: str
    published_by: str
    count: int
    chunks: int
    sha256: str  # of the bundle's payload, as its manifest names it
    rows: bytes


class ChainView(Protocol):
    def check(self, site: str, door: str, epoch: int | None = None):  # -> chain.ChainResult
        ...


class StationStore(ABC):
    """What the station's web side reads and writes; thread-safe (the web app calls it from threads)."""

    # ---------------------------------------------------------------- accounts and sessions
    @abstractmethod
    def add_account(self, name: str, role: str, password_hash: str, at: datetime) -> bool:
        """Add an account; False (nothing changed) when the name is taken."""

    @abstractmethod
    def accounts(self) -> list[tuple[str, str, str]]:
        """(name, role, created_at) of every account, by name."""

    @abstractmethod
    def account(self, name: str) -> tuple[str, str] | None:
        """(role, password_hash) of one account that may log in (not disabled)."""

    @abstractmethod
    def account_rows(self) -> list[AccountRow]:
        """Every account with its last login and whether it is disabled, by name."""

    @abstractmethod
    def change_account(self, name: str, *, role: str | None = None, disabled: bool | None = None,
                       password_hash: str | None = None) -> Literal["ok", "no_such_account", "last_admin"]:
        """Change one account in one transaction; refused (``last_admin``) when it would leave no
        enabled admin. Disabling an account or setting its password ends its sessions."""

    @abstractmethod
    def note_login(self, name: str, at: datetime) -> None:
        """Keep when the account last logged in."""

    @abstractmethod
    def add_session(self, token_hash: str, name: str, csrf: str, at: datetime) -> str:
        """Open a session for an existing account; returns the account's role."""

    @abstractmethod
    def session(self, token_hash: str) -> tuple[str, str, str, str] | None:
        """(name, role, csrf, last_seen) of a session."""

    @abstractmethod
    def touch_session(self, token_hash: str, at: datetime) -> None: ...

    @abstractmethod
    def end_session(self, token_hash: str) -> None: ...

    # ---------------------------------------------------------------- audit
    @abstractmethod
    def add_audit(self, at: datetime, who: str, address: str, action: str, detail: str, result: str) -> None: ...

    @abstractmethod
    def audit_entries(self, limit: int) -> list[tuple[int, str, str, str, str, str, str]]:
        """(id, at, who, address, action, detail JSON, result), newest first."""

    # ---------------------------------------------------------------- the published roster
    @abstractmethod
    def published_roster(self, site: str) -> PublishedRoster | None:
        """What this station last published as ``site``'s roster (None: nothing yet)."""

    @abstractmethod
    def keep_published_roster(self, roster: PublishedRoster) -> None:
        """Keep ``roster`` as the site's last published one (replacing the one before)."""

    # ---------------------------------------------------------------- alarms
    @abstractmethod
    def acknowledge(self, site: str, door: str, epoch: int, seq: int, by: str, at: datetime,
                    comment: str) -> AckOutcome:
        """Keep an acknowledgement (never changed or deleted) of an archived alarm, at most once."""

    @abstractmethod
    def alarms(self, acknowledged: bool, limit: int) -> list[tuple]:
        """(site, door, seq, ts, type, payload, epoch, by, at, comment): open alarms in received
        order, or acknowledged ones newest acknowledgement first."""

    @abstractmethod
    def open_alarms(self, limit: int, ranks: dict[str, int], search: EventSearch | None = None,
                    before: int | None = None) -> list[tuple[int, str, str, int, str, str, bytes, int]]:
        """(id, site, door, seq, ts, type, payload, epoch) of the alarms neither acknowledged nor closed
        by their door that match ``search`` (as :meth:`search_events`): by ``ranks[type]`` (a type not
        named ranks after those named), newest received first; with ``before`` (a row id), only those
        after that row in this order (keyset paging: the cursor's rank is that of its type)."""

    @abstractmethod
    def alarm_version(self) -> tuple[int, int, int]:
        """What changes whenever the open alarms may have: the newest archived alarm, acknowledgement
        and closure (their received or insertion order)."""

    @abstractmethod
    def open_alarm_counts(self) -> dict[tuple[str, str], dict[str, int]]:
        """{(site, door): {type: how many}} of the open alarms (as :meth:`open_alarms`)."""

    @abstractmethod
    def acknowledge_many(self, alarms: list[tuple[str, str, int, int]], by: str, at: datetime,
                         comment: str) -> list[AckOutcome]:
        """:meth:`acknowledge` each (site, door, epoch, seq) with one comment, in one transaction;
        the outcome of each, in order."""

    @abstractmethod
    def closed_alarms(self, limit: int) -> list[tuple[str, str, int, str, str, bytes, int, int, str]]:
        """(site, door, seq, ts, type, payload, epoch, closed_by seq, at) of the alarms their door closed
        with a state event (and of those state events), newest closure first."""

    @abstractmethod
    def answer_position(self) -> int:
        """How far (the live stream's cursor) the state events were read for the alarms they close."""

    @abstractmethod
    def answer_candidates(self, after: int, types: tuple[str, ...],
                          limit: int) -> list[tuple[int, str, str, int, int, str, bytes]]:
        """(id, site, door, epoch, seq, type, payload) of the events of ``types`` received after cursor
        ``after``, in received order."""

    @abstractmethod
    def door_events_of(self, site: str, door: str, epoch: int, type_: str, *, before_seq: int | None = None,
                       after_seq: int | None = None, open_only: bool = False,
                       limit: int = 100) -> list[tuple[int, bytes]]:
        """(seq, payload) of one door's events of one type in its epoch, below ``before_seq`` (highest
        first) or above ``after_seq`` (lowest first); ``open_only``: alarms still open."""

    @abstractmethod
    def close_alarms(self, closures: list[tuple[str, str, int, int, int]], at: datetime, position: int) -> None:
        """Keep (site, door, epoch, seq, closed_by seq) closures (never changed or deleted; one already
        closed or acknowledged stays as it was) and move :meth:`answer_position` on to ``position``."""

    @abstractmethod
    def events_around(self, site: str, door: str, epoch: int, seq: int,
                      span: int) -> list[tuple[int, str, str, bytes, int]]:
        """Rows as :meth:`events_after` of the door's events of ``epoch`` from ``seq - span`` to
        ``seq + span``, in seq order."""

    # ---------------------------------------------------------------- the page's reads
    @abstractmethod
    def prepare_reads(self) -> None:
        """Make what the reads need (indexes, the archive's tables) once the archive exists."""

    @abstractmethod
    def last_id(self) -> int:
        """The live stream's cursor: the received order of the newest archived event (0: none)."""

    @abstractmethod
    def events_after(self, after: int, limit: int) -> list[tuple[int, str, str, bytes, int]]:
        """(id, site, door, payload, epoch) received after cursor ``after``, in received order."""

    @abstractmethod
    def recent_events(self, limit: int) -> list[tuple[int, str, str, bytes, int]]:
        """The newest ``limit`` events as :meth:`events_after` rows, oldest first."""

    @abstractmethod
    def events_between(self, start: datetime, end: datetime, site: str | None,
                       door: str | None) -> list[tuple[int, str, str, bytes, int]]:
        """Rows as :meth:`events_after` of every event (every epoch) whose ts is in [start, end)."""

    @abstractmethod
    def search_events(self, search: EventSearch, before: int | None,
                      limit: int) -> list[tuple[int, str, str, bytes, int]]:
        """Rows as :meth:`events_after` of the newest ``limit`` events matching ``search``, newest first
        (by the instant of ``ts``, then received order); with ``before`` (a row id), only those
        older than that row: keyset paging."""

    @abstractmethod
    def doors(self) -> list[tuple[str, str, str | None, str | None, str | None, int]]:
        """(site, door, status JSON, occupancy JSON, status_at, current epoch) of every door, in order."""

    @abstractmethod
    def current_epoch(self, site: str, door: str) -> int:
        """The door's current chain epoch (1 for a door the archive does not know)."""

    @abstractmethod
    def last_payload(self, site: str, door: str, epoch: int) -> bytes | None:
        """The payload of the highest seq of the door's epoch."""

    @abstractmethod
    def chains(self) -> ChainView:
        """Each door's chain verification (``.check(site, door, epoch)`` -> ChainResult)."""

    # ---------------------------------------------------------------- what the ingest refused or set apart
    @abstractmethod
    def rejects(self, per_door: int, site: str | None = None,
                door: str | None = None) -> list[tuple[int, str, str, str, str, str, bytes, int]]:
        """(id, received_at, site, door, topic, reason, payload start, payload size) of each door's
        newest ``per_door`` messages the ingest refused (``ingest_rejects``), by site and door, newest
        first; at most :data:`PAYLOAD_START` bytes of each payload."""

    @abstractmethod
    def conflicts(self, per_door: int, site: str | None = None,
                  door: str | None = None) -> list[tuple[int, str, str, str, int, str, bytes, int]]:
        """(id, received_at, site, door, seq, topic, payload start, payload size) of each door's newest
        ``per_door`` conflicting copies (``conflicts``), by site and door, newest first."""

    @abstractmethod
    def problem_counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(refused messages, conflicting copies) of every (site, door) that has any."""

    @abstractmethod
    def close(self) -> None: ...
