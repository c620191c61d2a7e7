"""The supervision station: ingest from the broker into the archive, and the supervisor's web page.
The archive is an SQLite file (:mod:`.archive`) or PostgreSQL (:mod:`.archive_pg`).

Runs on the supervisor's machine (``accessctl station serve``), never on a door. Modules by job:
:mod:`.config` the TOML file; :mod:`.storage` the connection to the archive file;
:mod:`.accounts`, :mod:`.audit`, :mod:`.alarms` the station's own tables; :mod:`.queries` read-only
SQL over the archive's ``events`` and ``doors``; :mod:`.chain`, :mod:`.register`, :mod:`.chart` what
the pages compute; :mod:`.guard` (session, CSRF, role, audit), :mod:`.web`, :mod:`.pages` and
:mod:`.stream` the web app; :mod:`.commands` the door commands; :mod:`.server` the composition root.
"""
