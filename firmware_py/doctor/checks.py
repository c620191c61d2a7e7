"""The checks of `accessctl doctor`: each looks at one thing and says what to do about it.

Every check returns :class:`CheckResult` values (PASS, WARN or FAIL, a line
saying what was found, and for WARN/FAIL what the technician should do). They
read the machine only through :class:`~firmware_py.doctor.probes.Probes` and
never write anything lasting: the database check takes the write lock and
rolls its test write back, so no event is ever stored by the doctor.
"""

from __future__ import annotations

import errno
import os
import pwd
import socket
import sqlite3
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from firmware_py.config.schema import Config, load_config, with_overrides
from firmware_py.doctor.probes import Probes
from firmware_py.errors import ConfigError, StoreError

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"


@dataclass(frozen=True)
class CheckResult:
    status: str  # PASS | WARN | FAIL
    check: str  # short name: config, wireless, clock, gpio, serial, pcsc, database, device key, broker
    message: str  # what was found
    action: str = ""  # what to do (WARN and FAIL)

    @property
    def ok(self) -> bool:
        return self.status != FAIL


# --------------------------------------------------------------------------- config


def check_config(path: str | Path, *, database: str | None = None,
                 broker: str | None = None) -> tuple[CheckResult, Config | None]:
    try:
        cfg = with_overrides(load_config(path), database=database, broker=broker)
    except ConfigError as exc:
        action = "fix every line above, then: accessctl config check --config FILE"
        if "Permission denied" in str(exc):
            action = f"the file is 0640 root:accessctl: {AS_SERVICE_USER}"
        return CheckResult(FAIL, "config", f"{path} is not valid:\n{exc}", action), None
    return CheckResult(PASS, "config", f"{path} valid: site {cfg.site.site}, door {cfg.site.door}"), cfg


# --------------------------------------------------------------------------- article 23


def check_wireless(probes: Probes) -> CheckResult:
    found = probes.wireless_devices()
    if not found:
        return CheckResult(PASS, "wireless", "no Wi-Fi or Bluetooth device (article 23)")
    return CheckResult(
        FAIL, "wireless", f"{', '.join(found)} present: article 23 allows no wireless module",
        "add the lines of deploy/pi/config.txt.snippet (dtoverlay=disable-wifi, dtoverlay=disable-bt) to "
        "/boot/firmware/config.txt, disable wpa_supplicant and bluetooth (deploy/pi/README.md), reboot; "
        "remove any USB Wi-Fi or Bluetooth dongle")


# --------------------------------------------------------------------------- clock


def check_clock(probes: Probes, cfg: Config | None) -> CheckResult:
    now = probes.now()
    if cfg is not None and now < cfg.policy.clock_floor:
        return CheckResult(
            FAIL, "clock",
            f"the clock reads {now.isoformat(timespec='seconds')}, before [policy] clock_floor "
            f"{cfg.policy.clock_floor.isoformat()}: every request would be denied (clock_unsynchronised)",
            "set the time from the site's time server: chronyc makestep; "
            "check chronyc tracking (deploy/pi/README.md)")
    synced = probes.ntp_synchronised()
    rtc = probes.path("/dev/rtc0").exists()
    rtc_text = "; real-time clock /dev/rtc0 present" if rtc else ""
    if synced:
        return CheckResult(PASS, "clock", f"synchronised to a time server{rtc_text}")
    state = "not synchronised to a time server" if synced is False else "synchronisation state unknown"
    if rtc:
        return CheckResult(WARN, "clock", f"{state}; the real-time clock /dev/rtc0 keeps time across power cuts",
                           "point chrony at the site's time server and check chronyc tracking (deploy/pi/README.md)")
    return CheckResult(FAIL, "clock", f"{state} and no real-time clock (/dev/rtc0): after a power cut the "
                                      "time is wrong until a time server answers",
                       "fit the DS3231 (dtoverlay=i2c-rtc,ds3231, deploy/pi/config.txt.snippet) and point chrony "
                       "at the site's time server (deploy/pi/README.md)")


# --------------------------------------------------------------------------- devices


def check_gpio(probes: Probes) -> CheckResult:
    factory = probes.environ.get("GPIOZERO_PIN_FACTORY", "")
    if factory == "mock":
        return CheckResult(WARN, "gpio", "GPIOZERO_PIN_FACTORY=mock: gpiozero's simulated pins, no GPIO chip is used",
                           "fine on a simulator; on the door's Pi unset GPIOZERO_PIN_FACTORY (the service sets lgpio)")
    chip = probes.path("/dev/gpiochip0")
    if not chip.exists():
        return CheckResult(FAIL, "gpio", "no GPIO chip at /dev/gpiochip0",
                           "run this on the Raspberry Pi (Raspberry Pi OS or Debian with the GPIO character device)")
    try:
        os.close(os.open(chip, os.O_RDWR))
    except OSError as exc:
        return CheckResult(FAIL, "gpio", f"/dev/gpiochip0 cannot be opened: {exc.strerror}",
                           "the service user must be in the gpio group and the chip group-writable: "
                           "deploy/install.sh does both (udev rule 60-accessctl-gpio.rules)")
    if factory not in ("", "lgpio"):
        return CheckResult(WARN, "gpio", f"/dev/gpiochip0 opens, but GPIOZERO_PIN_FACTORY={factory}",
                           "the service uses lgpio (deploy/accessctl.service); unset the variable here to check that")
    if not probes.module_available("lgpio"):
        return CheckResult(FAIL, "gpio", "/dev/gpiochip0 opens, but gpiozero's pin library lgpio is missing",
                           "apt-get install python3-lgpio (the virtual environment sees it: install.sh makes it "
                           "with --system-site-packages)")
    return CheckResult(PASS, "gpio", "/dev/gpiochip0 opens; pin library lgpio present")


def check_serial_ports(probes: Probes, cfg: Config) -> list[CheckResult]:
    import serial  # pyserial

    results = []
    for reader in cfg.hardware.id_readers:
        what = f"{reader.port} (ID card reader, {reader.side})"
        path = probes.path(reader.port)
        if not path.exists():
            results.append(CheckResult(
                FAIL, "serial", f"{what} does not exist",
                "plug the reader in; ls -l /dev/serial/by-id/ shows what is connected; "
                "fix [[hardware.id_reader]] port (a /dev/serial/by-id/ name survives re-plugging)"))
            continue
        try:
            port = serial.Serial(str(path), baudrate=reader.baudrate, timeout=0, exclusive=True)
        except serial.SerialException as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                results.append(CheckResult(
                    WARN, "serial", f"{what} opens but is locked by another process",
                    f"fine if the controller is running; otherwise find the holder: fuser -v {reader.port}"))
            elif exc.errno in (errno.EACCES, errno.EPERM):
                results.append(CheckResult(FAIL, "serial", f"{what}: permission denied",
                                           "the service user must be in the dialout group (deploy/install.sh)"))
            else:
                results.append(CheckResult(FAIL, "serial", f"{what} does not open: {exc}",
                                           "check the cable and the adapter; dmesg shows USB errors"))
            continue
        port.close()
        results.append(CheckResult(PASS, "serial", f"{what} opens at {reader.baudrate} baud"))
    return results


def check_badge_readers(probes: Probes, cfg: Config) -> list[CheckResult]:
    wanted = cfg.hardware.badge_readers
    if not wanted:
        return [CheckResult(PASS, "pcsc", "no badge reader configured; PC/SC not needed")]
    try:
        listed = probes.pcsc_readers()
    except ImportError as exc:
        return [CheckResult(FAIL, "pcsc", f"pyscard cannot be imported ({exc})",
                            "reinstall the package: deploy/install.sh (needs swig and libpcsclite-dev)")]
    if listed is None:
        return [CheckResult(FAIL, "pcsc", "the PC/SC service (pcscd) does not answer",
                            "systemctl enable --now pcscd.socket; journalctl -u pcscd shows why it failed")]
    results = []
    for reader in wanted:
        hits = [name for name in listed if reader.reader_name in name]
        what = f"badge reader {reader.reader_name!r} ({reader.side})"
        if len(hits) == 1:
            results.append(CheckResult(PASS, "pcsc", f"{what} present"))
        elif hits:
            results.append(CheckResult(WARN, "pcsc", f"{what} matches {len(hits)} readers: {', '.join(hits)}",
                                       "make [[hardware.badge_reader]] reader_name a part of one name only"))
        else:
            seen = ", ".join(repr(n) for n in listed) or "no reader at all"
            results.append(CheckResult(FAIL, "pcsc", f"{what} not found; pcscd lists {seen}",
                                       "plug the reader in (pcsc_scan shows its name) or fix reader_name"))
    return results


# --------------------------------------------------------------------------- storage


def _owner_problem(probes: Probes, paths: list[Path]) -> str | None:
    """The first of ``paths`` the service user does not own, when the doctor runs as root."""
    if probes.service_user is None or os.geteuid() != 0:
        return None
    try:
        uid = pwd.getpwnam(probes.service_user).pw_uid
    except KeyError:
        return None
    for p in paths:
        if p.exists() and p.stat().st_uid != uid:
            return f"{p} is owned by {pwd.getpwuid(p.stat().st_uid).pw_name}, not {probes.service_user}"
    return None


AS_SERVICE_USER = "run the doctor as the service user: sudo -u accessctl accessctl doctor"


def _closed_parent(path: Path) -> Path | None:
    """The directory that keeps this user from even seeing whether ``path`` exists, if any."""
    for parent in path.parents:
        if parent.exists():
            return None if os.access(parent, os.X_OK) else parent
    return None


def _unreadable(path: Path) -> str:
    if path.exists():
        return "is not readable by this user"
    closed = _closed_parent(path)
    return f"cannot be seen: {closed} is closed to this user" if closed else "does not exist"


def check_database(probes: Probes, cfg: Config) -> CheckResult:
    from firmware_py.storage import inspection
    from firmware_py.storage.eventstore import verify

    path = cfg.storage.database
    closed = _closed_parent(path)
    if closed is not None:
        return CheckResult(FAIL, "database", f"{path} cannot be seen: {closed} is closed to this user", AS_SERVICE_USER)
    if not path.exists():
        parent = path.parent
        if parent.is_dir() and os.access(parent, os.W_OK):
            return CheckResult(WARN, "database", f"{path} does not exist yet",
                               "the service creates it at its first start (or import the roster now)")
        return CheckResult(FAIL, "database", f"{path} does not exist and {parent} is missing or not writable",
                           "run deploy/install.sh (it makes /var/lib/accessctl, 0700 accessctl)")
    started = time.monotonic()
    try:
        db = inspection.open_for_writing(path, timeout_s=5)
    except sqlite3.Error as exc:
        return CheckResult(FAIL, "database", f"{path} does not open for writing: {exc}",
                           "it must belong to the service user: chown accessctl:accessctl /var/lib/accessctl/*")
    try:
        try:
            inspection.try_write(db)
        except sqlite3.Error as exc:
            return CheckResult(FAIL, "database", f"{path} is not writable: {exc}",
                               "it must belong to the service user: chown accessctl:accessctl /var/lib/accessctl/*")
        if not inspection.has_event_log(db):
            return CheckResult(FAIL, "database", f"{path} is not an accessctl database (no events table)",
                               "point [storage] database (or --db) at the controller's database")
        result = verify(db)
    finally:
        db.conn.close()
    if not result.ok:
        return CheckResult(
            FAIL, "database", f"{path}: hash chain broken at seq {result.bad_seq}: {result.problem}",
            "do not repair it: it is evidence (articles 19, 21). Keep a copy (cp -a the file with its -wal), "
            "report it to the security officer; accessctl log verify shows the same")
    owner = _owner_problem(probes, [path, Path(f"{path}-wal"), Path(f"{path}-shm")])
    if owner:
        return CheckResult(FAIL, "database", f"{owner}: the service could not write it",
                           f"chown {probes.service_user}:{probes.service_user} {path.parent}/*")
    return CheckResult(PASS, "database", f"{path} writable; chain intact ({result.count:,} events, "
                                         f"checked in {time.monotonic() - started:.2f} s)")


def check_device_key(probes: Probes, cfg: Config) -> CheckResult:
    path = cfg.storage.secret
    closed = _closed_parent(path)
    if closed is not None:
        return CheckResult(FAIL, "device key", f"{path} cannot be seen: {closed} is closed to this user",
                           AS_SERVICE_USER)
    if not path.exists():
        return CheckResult(WARN, "device key", f"{path} does not exist yet",
                           "the service creates it at its first start; then back it up with the database")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        return CheckResult(FAIL, "device key", f"{path} has mode {mode:04o}: others may read the key for ID hashes",
                           f"chmod 600 {path}")
    owner = _owner_problem(probes, [path])
    if owner:
        return CheckResult(FAIL, "device key", f"{owner}: the service could not read it",
                           f"chown {probes.service_user}:{probes.service_user} {path}")
    return CheckResult(PASS, "device key", f"{path} present, mode {mode:04o}")


# --------------------------------------------------------------------------- broker


def check_broker(probes: Probes, cfg: Config, *, timeout: float = 5.0) -> CheckResult:
    """Can the door reach its broker as its own account?

    With the door's service stopped, log in as the door (TLS, certificate, account) and leave. With
    it running, never: Mosquitto names the session after the certificate's account, so the doctor's
    login would replace the door's own connection. Then only TLS and the certificate are checked, and
    the door's own link state is read from its latest ``link_up``/``link_down`` event; the line says so.
    """
    from firmware_py.doctor.probes import probe_broker, probe_tls
    from firmware_py.link.broker import BrokerSettings

    m = cfg.mqtt
    if not m.enabled:
        return CheckResult(WARN, "broker", "MQTT is off ([mqtt] enabled = false): the supervisor sees nothing",
                           "set [mqtt] enabled = true once the venue broker is up (deploy/mosquitto/README.md)")
    for label, file in (("ca_file", m.ca_file), ("cert_file", m.cert_file), ("key_file", m.key_file),
                        ("password_file", m.password_file)):
        if file is not None and not os.access(file, os.R_OK):
            return CheckResult(FAIL, "broker", f"[mqtt] {label} {file} {_unreadable(file)}",
                               "copy the door's files from the certificate machine (deploy/mosquitto/README.md); "
                               f"keys 0600 owned by accessctl; {AS_SERVICE_USER}")
    try:
        settings = BrokerSettings.from_config(m, persistent_session=False)
    except ConfigError as exc:
        return CheckResult(FAIL, "broker", f"[mqtt]: {exc}", "fix the file named, then run the doctor again")
    pid = probes.door_service_pid(cfg.storage.database)
    try:
        if pid is not None:
            answer = probe_tls(settings, timeout=timeout)
        else:
            answer = probe_broker(settings, timeout=timeout)
    except ConnectionRefusedError:
        return CheckResult(FAIL, "broker", f"{m.broker}: connection refused",
                           "is the broker running on that port? (systemctl status mosquitto on the broker machine)")
    except socket.gaierror as exc:
        return CheckResult(FAIL, "broker", f"{m.broker}: cannot resolve {settings.host}: {exc.strerror}",
                           f"add {settings.host} to /etc/hosts (the LAN has no name server) or use its address")
    except ssl.SSLCertVerificationError as exc:
        return CheckResult(FAIL, "broker", f"{m.broker}: TLS: the broker's certificate is not trusted: "
                                           f"{exc.verify_message}",
                           "ca_file must be the site CA that signed the broker's certificate, and the broker's "
                           "name must be in it (make-certs.sh --server-name / --ip)")
    except ssl.SSLError as exc:
        return CheckResult(FAIL, "broker", f"{m.broker}: TLS handshake failed: {exc.reason or exc}",
                           "check cert_file and key_file (the door's pair, signed by the site CA)")
    except TimeoutError:
        return CheckResult(FAIL, "broker", f"{m.broker}: no answer within {timeout:g} s",
                           "check the cable and the isolated LAN between door and broker, and any firewall")
    except OSError as exc:
        return CheckResult(FAIL, "broker", f"{m.broker}: {exc.strerror or exc}",
                           "check the cable and the isolated LAN between door and broker")
    tls = settings.tls
    how = f"{answer.tls_version}, certificate verified" if tls and m.tls_verify else (
        f"{answer.tls_version}, certificate NOT verified" if tls else "plain text")
    account = _account(settings)
    if pid is not None:
        result = _running_door_link(cfg, pid, f"{m.broker} reachable ({how})", account)
    else:
        result = _login(cfg, answer, how, account)
    if result.status == PASS and not tls:
        return CheckResult(WARN, "broker", result.message, "use mqtts:// : the venue broker has a TLS listener only")
    if result.status == PASS and not m.tls_verify:
        return CheckResult(WARN, "broker", result.message, "set [mqtt] tls_verify = true outside a lab")
    return result


def _login(cfg: Config, answer, how: str, account: str) -> CheckResult:
    m = cfg.mqtt
    if not answer.accepted:
        return CheckResult(FAIL, "broker", f"{m.broker}: the broker refused the login as {account}: {answer.reason}",
                           "Mosquitto: the account is the certificate's CN; check cert_file and key_file (the "
                           "door's pair) and the broker's ACL (deploy/mosquitto/add-account.sh). RabbitMQ: check "
                           "[mqtt] username and password_file (deploy/rabbitmq/add-door.sh)")
    return CheckResult(PASS, "broker", f"{m.broker} reachable ({how}), logged in as {account} "
                                       f"with MQTT {'5' if m.protocol == 5 else '3.1.1'} in {answer.seconds:.2f} s")


def _account(settings) -> str:
    """Who the door logs in as: its certificate (Mosquitto's account) and its username (RabbitMQ's)."""
    parts = []
    if settings.tls and settings.cert_file:
        parts.append(f"the certificate {settings.cert_file.name}")
    if settings.username:
        parts.append(f"username {settings.username!r}")
    return " and ".join(parts) or "(anonymous)"


def _running_door_link(cfg: Config, pid: int, reached: str, account: str) -> CheckResult:
    """The broker check while the door's service runs: reachability and TLS seen by the doctor, the login
    as the door's own link reports it (its latest link_up or link_down event)."""
    from firmware_py.storage import inspection
    from firmware_py.storage.db import open_read_only

    process = f"process {pid}" if pid else "a process"
    prefix = (f"{reached}; TLS and certificate checked only, not logged in as {account}: the door service is "
              f"running ({process}) and a second login with its account would replace its connection")
    bound = f"{cfg.mqtt.link_down_after_s:g} s"
    try:
        db = open_read_only(cfg.storage.database)
        try:
            last = inspection.last_link_event(db)
            queued = inspection.outbox_size(db)
        finally:
            db.conn.close()
    except (sqlite3.Error, StoreError) as exc:
        return CheckResult(WARN, "broker", f"{prefix}; the door's own link state is unknown: {exc}",
                           "journalctl -u accessctl shows the link's state (\"MQTT link up\")")
    if last is not None and last.type == "link_down":
        return CheckResult(FAIL, "broker", f"{prefix}; the door's own link is DOWN: link_down at {last.ts} (event "
                                           f"{last.seq}), {queued} events waiting in the outbox",
                           "journalctl -u accessctl says why the broker refuses or cannot be reached; stop the "
                           "service and run the doctor again to try the door's login")
    history = f"the last one ended at {last.ts}, link_up event {last.seq}" if last else "none recorded"
    return CheckResult(PASS, "broker", f"{prefix}; the door's own link reports no outage over {bound} now "
                                       f"({history}); {queued} events waiting in the outbox")
