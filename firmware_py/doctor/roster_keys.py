"""The doctor's checks of a door's roster keys (docs/commissioning.md, "Roster keys").

``roster keys``: the files ``[roster]`` names are there, readable by the service user, private
where they must be (the site roster key: nobody but the service user) and of the right kind (an
Ed25519 public key, not the station's private key; 32 bytes), and each is shown by its
fingerprint, which ``accessctl station roster keygen`` printed on the station. Key files
installed in the configuration's directory that ``[roster]`` does not name are a warning.

``roster``: whether the station's public key verifies the door's bundle. With the door's service
stopped the doctor logs in as the door and checks the manifest retained at the broker with the
key: the same bundle as the one applied (same SHA-256), or a newer one. While the service runs
it never logs in as the door (that would replace the door's own connection) and reads the door's
latest ``roster_applied``/``roster_rejected`` event instead.
"""

from __future__ import annotations

import os
import pwd
import sqlite3
import stat
from pathlib import Path

from firmware_py.config.schema import Config
from firmware_py.doctor.checks import AS_SERVICE_USER, FAIL, PASS, WARN, CheckResult, _closed_parent
from firmware_py.doctor.probes import Probes
from firmware_py.errors import BundleError, ConfigError, StoreError
from firmware_py.link import roster_keys

PUBLIC_FILE, SITE_FILE = "roster-signing.pub", "site-roster.key"  # where deploy/install.sh puts them
GUIDE = "docs/commissioning.md, 'Roster keys'"
INSTALL_PUBLIC = ("copy roster-signing.pub from the station and install it: deploy/install.sh --station-public-key "
                  f"FILE ({GUIDE})")
INSTALL_SITE = f"copy site-roster.key from the station and install it: deploy/install.sh --site-key FILE ({GUIDE})"
KEY_MISMATCH = ("the station signs with another key: compare the fingerprint above with the station's "
                "(`accessctl station roster keygen` printed it; `accessctl doctor` on another door shows it), install "
                f"the station's current roster-signing.pub and restart the door ({GUIDE}, 'Rotate')")


def check_roster_keys(probes: Probes, cfg: Config) -> list[CheckResult]:
    r = cfg.roster
    if not r.enabled:
        return [_not_configured(cfg)]
    return [check_public_key(probes, r.station_public_key), check_site_key(probes, r.site_key)]


def _not_configured(cfg: Config) -> CheckResult:
    installed = [p for p in (cfg.path.parent / PUBLIC_FILE, cfg.path.parent / SITE_FILE) if p.exists()]
    if installed:
        return CheckResult(
            WARN, "roster keys", f"{', '.join(map(str, installed))} installed, but {cfg.path} has no [roster] "
                                 "naming them: the door takes no roster from the station and runs commands from "
                                 "the broker unsigned",
            f'add to {cfg.path}: [roster] station_public_key = "{cfg.path.parent / PUBLIC_FILE}" and site_key = '
            f'"{cfg.path.parent / SITE_FILE}", then restart the door; or remove the files if this door imports its '
            "own roster")
    return CheckResult(PASS, "roster keys", "no [roster] keys: the roster is imported at this door and commands "
                                            "from the broker run unsigned")


# --------------------------------------------------------------------------- the two files


def check_public_key(probes: Probes, path: Path) -> CheckResult:
    what = f"[roster] station_public_key {path}"
    missing = _missing(path, what, INSTALL_PUBLIC)
    if missing:
        return missing
    try:
        head = path.read_bytes()[:64 * 1024]
    except OSError as exc:
        return CheckResult(FAIL, "roster keys", f"{what} is not readable by this user: {exc.strerror}",
                           AS_SERVICE_USER)
    if b"PRIVATE KEY" in head:
        return CheckResult(FAIL, "roster keys", f"{what} is the station's PRIVATE signing key: with it anyone at "
                                                "this door can sign rosters and commands for every door",
                           f"shred -u {path} now; treat the key as leaked: make a new pair on the station and "
                           f"rotate ({GUIDE}, 'Rotate'); install only roster-signing.pub here")
    try:
        key = roster_keys.load_public_key(path)
    except ConfigError as exc:
        return CheckResult(FAIL, "roster keys", str(exc), INSTALL_PUBLIC)
    st = path.stat()
    if st.st_mode & 0o022:
        return CheckResult(FAIL, "roster keys", f"{what} has mode {stat.S_IMODE(st.st_mode):04o}: others may "
                                                "replace the key the door trusts",
                           f"chown root:{probes.service_user or 'accessctl'} {path} && chmod 640 {path}")
    unreadable = _service_user_cannot_read(probes, path)
    if unreadable:
        return CheckResult(FAIL, "roster keys", f"{what}: {unreadable}: the door would not start",
                           f"chown root:{probes.service_user} {path} && chmod 640 {path}")
    return CheckResult(PASS, "roster keys", f"{what}: Ed25519, fingerprint {roster_keys.public_key_id(key)}; the "
                                            "door applies rosters and runs commands from the broker only when "
                                            "signed with it")


def check_site_key(probes: Probes, path: Path) -> CheckResult:
    what = f"[roster] site_key {path}"
    missing = _missing(path, what, INSTALL_SITE)
    if missing:
        return missing
    mode = stat.S_IMODE(path.stat().st_mode)
    user = probes.service_user or "accessctl"
    if mode & 0o077:
        return CheckResult(FAIL, "roster keys", f"{what} has mode {mode:04o}: "
                                                f"{'everyone' if mode & 0o004 else 'its group'} may read the site "
                                                "roster key (with it ID numbers can be tried against the rows' "
                                                "hashes); the door refuses to start with it",
                           f"chown {user}:{user} {path} && chmod 600 {path}; if others could read it for a while, "
                           f"treat it as leaked and rotate it ({GUIDE}, 'Rotate')")
    unreadable = _service_user_cannot_read(probes, path)
    if unreadable:
        return CheckResult(FAIL, "roster keys", f"{what}: {unreadable}: the door would not start",
                           f"chown {user}:{user} {path} && chmod 600 {path}")
    try:
        site_key = roster_keys.load_site_key(path)
    except ConfigError as exc:
        action = AS_SERVICE_USER if "Permission denied" in str(exc) else INSTALL_SITE
        return CheckResult(FAIL, "roster keys", str(exc), action)
    return CheckResult(PASS, "roster keys", f"{what}: {len(site_key)} bytes, mode {mode:04o}, key id "
                                            f"{roster_keys.key_id(site_key)}")


def _missing(path: Path, what: str, action: str) -> CheckResult | None:
    closed = _closed_parent(path)
    if closed is not None:
        return CheckResult(FAIL, "roster keys", f"{what} cannot be seen: {closed} is closed to this user",
                           AS_SERVICE_USER)
    if not path.exists():
        return CheckResult(FAIL, "roster keys", f"{what} does not exist: the door would not start", action)
    if not path.is_file():
        return CheckResult(FAIL, "roster keys", f"{what} is not a regular file", action)
    return None


def _service_user_cannot_read(probes: Probes, path: Path) -> str | None:
    """Why the service user could not read ``path`` (its mode bits and its directories'), when the doctor
    runs as root and can tell; None when it can, or when that cannot be told."""
    if probes.service_user is None or os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam(probes.service_user)
    except KeyError:
        return None  # no such user here (not an installed door): nothing to tell, as for the database's owner
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))

    def allowed(p: Path, owner_bit: int) -> bool:
        st = p.stat()
        if st.st_uid == user.pw_uid:
            return bool(st.st_mode & owner_bit)
        if st.st_gid in groups:
            return bool(st.st_mode & (owner_bit >> 3))
        return bool(st.st_mode & (owner_bit >> 6))

    for parent in reversed(path.resolve().parents):
        if not allowed(parent, stat.S_IXUSR):
            return f"the service user {user.pw_name} cannot enter {parent}"
    return None if allowed(path, stat.S_IRUSR) else f"the service user {user.pw_name} cannot read it"


# --------------------------------------------------------------------------- the key against the bundle


def check_roster_bundle(probes: Probes, cfg: Config, *, timeout: float = 5.0) -> list[CheckResult]:
    """Does the station's public key verify the door's bundle? Only on a door whose key files passed."""
    from firmware_py.storage import inspection
    from firmware_py.storage import roster_bundle as applying
    from firmware_py.storage.db import open_read_only

    try:
        keys = roster_keys.door_keys(cfg)
    except ConfigError:
        return []  # the roster keys lines said what is wrong
    if keys is None:
        return []
    try:
        db = open_read_only(cfg.storage.database)
        try:
            applied = applying.applied(db) or {}
            last = inspection.last_roster_event(db) if inspection.has_event_log(db) else None
        finally:
            db.conn.close()
    except (sqlite3.Error, StoreError):
        return []  # the database line says what is wrong
    pid = probes.door_service_pid(cfg.storage.database)
    if cfg.mqtt.enabled and pid is None:
        checked = _against_the_broker(probes, cfg, keys, applied, timeout)
        if checked is not None:
            return [checked]
    return [_from_the_log(cfg, applied, last, running=pid is not None)]


def _against_the_broker(probes: Probes, cfg: Config, keys, applied: dict, timeout: float) -> CheckResult | None:
    """The manifest retained at the broker checked with the key; None when the broker cannot be asked."""
    from firmware_py.link import roster_bundle as rb
    from firmware_py.link.broker import BrokerSettings

    topic = f"{cfg.mqtt.prefix}/{cfg.site.site}/roster"
    try:
        payload = probes.retained_message(BrokerSettings.from_config(cfg.mqtt, persistent_session=False), topic,
                                          timeout=timeout)
    except (ConfigError, OSError, ConnectionError):
        return None  # the broker line says why
    version = applied.get("version", 0)
    if payload is None:
        return CheckResult(WARN, "roster", f"the broker holds no roster for site {cfg.site.site} on {topic}; the "
                                           f"door has applied version {version}",
                           "publish the site's roster from the station (accessctl station roster publish)")
    try:
        manifest = rb.read_message(payload, keys.public_key)
    except BundleError as exc:
        if exc.reason == "bad_signature":
            return CheckResult(FAIL, "roster", f"the station's roster on {topic} does not verify with "
                                               "[roster] station_public_key: the door rejects it (bad_signature) and "
                                               f"keeps its roster (version {version})", KEY_MISMATCH)
        return CheckResult(FAIL, "roster", f"the message on {topic} is not a roster manifest the door takes: {exc}",
                           "publish the site's roster again from the station")
    if not isinstance(manifest, rb.Manifest):
        return CheckResult(FAIL, "roster", f"{topic} holds a roster chunk, not a manifest",
                           "publish the site's roster again from the station")
    if manifest.key_id != keys.key_id:
        return CheckResult(FAIL, "roster", f"the station's roster version {manifest.version} verifies, but its rows "
                                           f"are hashed under site roster key {manifest.key_id}, this door has "
                                           f"{keys.key_id}: the door rejects it (other_key)",
                           f"install the station's current site-roster.key ({GUIDE}, 'Rotate'), restart the door")
    if manifest.sha256 == applied.get("sha256"):
        return CheckResult(PASS, "roster", f"the applied roster version {version} verifies with the station's public "
                                           f"key (its manifest retained on {topic})")
    return CheckResult(PASS, "roster", f"the station's roster version {manifest.version} on {topic} verifies with "
                                       f"the station's public key; the door has applied version {version} and "
                                       "takes the newer one when it connects")


def _from_the_log(cfg: Config, applied: dict, last, *, running: bool) -> CheckResult:
    why = ("the door service is running, so the doctor does not log in as the door" if running
           else "the broker could not be asked" if cfg.mqtt.enabled else "MQTT is off")
    version = applied.get("version", 0)
    if last is not None and last.type == "roster_rejected" and last.detail.get("reason") in ("bad_signature",
                                                                                              "other_key"):
        reason = last.detail["reason"]
        action = KEY_MISMATCH if reason == "bad_signature" else (
            f"install the station's current site-roster.key ({GUIDE}, 'Rotate'), restart the door")
        return CheckResult(FAIL, "roster", f"the door's latest roster event is roster_rejected ({reason}) at "
                                           f"{last.ts}: {last.detail.get('message', '')}; it keeps version {version}",
                           action)
    if not version:
        return CheckResult(PASS, "roster", f"no roster applied yet; {why}: the station's first one is checked with "
                                           "this key when it arrives")
    return CheckResult(PASS, "roster", f"roster version {version} applied at {applied.get('applied_at')} (verified "
                                       f"with the key then); {why}, so it is not checked again here")
