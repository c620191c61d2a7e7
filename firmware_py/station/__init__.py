"""The supervision station: ingest from the broker into the archive, and the supervisor's web page.

Runs on the supervisor's machine (``accessctl station serve``), never on a door. Rooms by job:

- :mod:`.ingest`: the MQTT subscriber that judges every message from a door and hands what is good
  to the archive (chain and epoch tracking, replay requests, the time beacon);
- :mod:`.archive`: storing only: the SQLite and PostgreSQL archives and their schemas, the web side's
  storage interface (:mod:`.archive.store`) with one adapter per backend, the move from one archive
  to the other, the door log checked against the archive;
- :mod:`.web`: the page: routes (:mod:`.web.app`), the guard in front of them, the HTML, the live
  stream, the register export, the door commands;
- :mod:`.accounts`: who may log in, with which role, and the audit trail of what they did.

:mod:`.config` reads the station's TOML file; :mod:`.server` is the composition root that builds
the ingest and the web app on either archive. Imports go down this list: the web side and the
ingest use the archive; the archive imports neither (``tests/unit/test_rooms.py``).
"""
