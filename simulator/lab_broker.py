"""A lab Mosquitto broker for tests and benchmarks, configured from the repo's deploy/mosquitto files.

The broker runs the production ``deploy/mosquitto/mosquitto.conf`` with only these values
replaced: the listener (a free port on 127.0.0.1), the certificate paths (made by
``make-certs.sh`` once per session), the CRL (a copy per broker, so a test can revoke), the
ACL (the repo's ``acl`` plus the blocks ``add-account.sh`` appends), the persistence
directory, the log file and ``user root`` (so a broker started by root still reads the
0600 keys). TLS, client certificates as the login (CN = username = client id), the
revocation list, the size limits and persistence stay as shipped.

:func:`make_broker_files` makes the certificates, ACL and accounts once; :class:`MosquittoBroker`
runs one broker on them. The test suite's fixtures (``mosquitto_broker``, ``mosquitto_broker_session``,
``mosquitto_files``) are in tests/fixtures/mosquitto.py; the benchmarks in bench/ use this directly.

Accounts: ``door.hn-archive-1.scan-room``, ``door.hn-archive-1.vault`` and the supervisor
accounts ``supervisor``, ``supervisor-2`` … ``supervisor-8``. The broker allows one connection
per account (the client id is the username), so every *hand-out* of "the supervisor" -- each
``broker.supervisor`` and each ``broker.connect()`` / ``connect(SUPERVISOR)`` -- gets the next
supervisor account of that broker (a ``client_id`` seen before gets its account again, so a
persistent session resumes). A door account is always that door's: two connections as one door
replace each other, as in production. ``password`` and ``password_file`` are still made for
each account (the door's config has a ``password_file``), but the broker ignores them.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from simulator.lab_client import ConnectRefused, MqttTestClient

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy" / "mosquitto"
PREFIX = "accessctl"
SITE = "hn-archive-1"
DOORS = ("scan-room", "vault")
SUPERVISOR = "supervisor"
SUPERVISORS = (SUPERVISOR, *(f"supervisor-{i}" for i in range(2, 9)))
def door_username(door: str, site: str = SITE) -> str:
    """The door's account (its certificate's CN): ``door.SITE.DOOR``."""
    return f"door.{site}.{door}"


def find_program(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


@dataclass(frozen=True)
class Account:
    """One MQTT account: the certificate and key a client logs in with (CN = ``username``).

    ``password`` / ``password_file`` are sent by clients whose config has one; the broker
    ignores them (use_identity_as_username)."""

    username: str
    password: str
    password_file: Path  # the password on one line, as the controller's [mqtt] password_file
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class BrokerFiles:
    """What the session made once: the CA (with its key and CRL), certificates, ACL and accounts."""

    dir: Path
    ca_file: Path
    server_cert: Path
    server_key: Path
    crl_file: Path
    acl_file: Path
    accounts: dict[str, Account]
    nameless: Account  # a certificate of the site CA without a CN: the broker refuses it at CONNACK

    @property
    def certs_dir(self) -> Path:
        """Where make-certs.sh keeps the site CA: more certificates and revocations go here."""
        return self.ca_file.parent


def make_broker_files(directory: Path) -> BrokerFiles:
    """Certificates and the CRL by make-certs.sh, ACL blocks by add-account.sh."""
    certs = directory / "certs"
    subprocess.run(
        ["bash", str(DEPLOY / "make-certs.sh"), "--site", SITE, "--server-name", "localhost",
         "--ip", "127.0.0.1", *[a for d in DOORS for a in ("--door", d)],
         *[a for s in SUPERVISORS for a in ("--supervisor", s)], "--dir", str(certs)],
        check=True, capture_output=True, text=True)
    acl = directory / "acl"
    shutil.copyfile(DEPLOY / "acl", acl)
    accounts = {}
    for kind, username, args in [("door", door_username(d), [SITE, d]) for d in DOORS] + [
            ("supervisor", s, [s]) for s in SUPERVISORS]:
        subprocess.run(["bash", str(DEPLOY / "add-account.sh"), "--acl", str(acl), "--prefix", PREFIX, kind, *args],
                       check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        password = secrets.token_urlsafe(18)
        password_file = directory / f"{username}.password"
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        accounts[username] = Account(username, password, password_file,
                                     certs / f"{username}.crt", certs / f"{username}.key")
    return BrokerFiles(directory, certs / "ca.crt", certs / "server.crt", certs / "server.key",
                       certs / "crl.pem", acl, accounts, _nameless_certificate(directory, certs))


def _nameless_certificate(directory: Path, certs: Path) -> Account:
    """A client certificate signed by the site CA whose subject has no CN, so it names no
    account: the broker answers its CONNECT with "Bad user name or password" (134)."""
    key, csr, crt = directory / "nameless.key", directory / "nameless.csr", directory / "nameless.crt"
    ext = directory / "nameless.ext"
    ext.write_text("basicConstraints = critical, CA:FALSE\nextendedKeyUsage = clientAuth\n")
    for cmd in (["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)],
                ["openssl", "req", "-new", "-key", str(key), "-subj", f"/O={SITE}", "-out", str(csr)],
                ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(certs / "ca.crt"), "-CAkey",
                 str(certs / "ca.key"), "-set_serial", "0x" + secrets.token_hex(16), "-days", "30",
                 "-extfile", str(ext), "-out", str(crt)]):
        subprocess.run(cmd, check=True, capture_output=True)
    password_file = directory / "nameless.password"
    password_file.write_text("unused\n")
    return Account("", "unused", password_file, crt, key)


def render_config(source: str, values: dict[str, str]) -> str:
    """``source`` with the value of each option named in ``values`` replaced.

    Every option must occur exactly once (so a second listener, e.g. a plain-text one,
    in the production file fails here rather than slipping into the tests).
    """
    seen: dict[str, int] = {}
    out = []
    for line in source.splitlines():
        key = line.split(None, 1)[0] if line.strip() and not line.lstrip().startswith("#") else ""
        if key in values:
            seen[key] = seen.get(key, 0) + 1
            line = f"{key} {values[key]}"
        out.append(line)
    wrong = {k: seen.get(k, 0) for k in values if seen.get(k, 0) != 1}
    if wrong:
        raise RuntimeError(f"{DEPLOY / 'mosquitto.conf'}: each of these options must occur exactly once: {wrong}")
    return "\n".join(out) + "\n"


@dataclass
class MosquittoBroker:
    """A Mosquitto process on 127.0.0.1 with the repo's configuration.

    ``url`` is ``mqtts://127.0.0.1:PORT``; log in with one of ``accounts`` (see
    :meth:`connect`) and trust ``ca_file``. :meth:`stop` and :meth:`start` make an
    outage; the broker comes back on the same port with its persisted state.
    """

    files: BrokerFiles
    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0
    prefix: str = PREFIX
    site: str = SITE
    startup_s: float = 0.0  # how long the last start() took until the broker was serving
    generation: int = 0  # how many times start() launched the process
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _clients: list[MqttTestClient] = field(default_factory=list, repr=False)
    _handed_out: int = field(default=0, repr=False)  # supervisor accounts handed out so far
    _session_accounts: dict[str, str] = field(default_factory=dict, repr=False)  # client id -> account

    def __post_init__(self) -> None:
        self.port = self.port or _free_port()
        self.persistence_dir = self.workdir / "data"
        self.persistence_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = self.workdir / "mosquitto.log"
        self.config_file = self.workdir / "mosquitto.conf"
        self.crl_file = self.workdir / "crl.pem"
        shutil.copyfile(self.files.crl_file, self.crl_file)
        self.config_file.write_text(render_config((DEPLOY / "mosquitto.conf").read_text(), {
            "user": "root",
            "listener": f"{self.port} {self.host}",
            "cafile": str(self.files.ca_file),
            "certfile": str(self.files.server_cert),
            "keyfile": str(self.files.server_key),
            "crlfile": str(self.crl_file),
            "acl_file": str(self.files.acl_file),
            "persistence_location": f"{self.persistence_dir}/",
            "log_dest": f"file {self.log_file}",
        }))

    # ------------------------------------------------------------ facts for clients
    @property
    def url(self) -> str:
        return f"mqtts://{self.host}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.files.ca_file

    @property
    def accounts(self) -> dict[str, Account]:
        return self.files.accounts

    @property
    def supervisor(self) -> Account:
        """A supervisor account not handed out before by this broker (one connection per account)."""
        name = SUPERVISORS[self._handed_out % len(SUPERVISORS)]
        self._handed_out += 1
        return self.files.accounts[name]

    def _account_for(self, username: str | None, client_id: str) -> Account | None:
        if username is None:
            return None
        if username == SUPERVISOR:
            if client_id and client_id in self._session_accounts:
                return self.files.accounts[self._session_accounts[client_id]]
            account = self.supervisor
            if client_id:
                self._session_accounts[client_id] = account.username
            return account
        if username not in self.files.accounts:
            raise KeyError(f"no test account {username!r}; there are {sorted(self.files.accounts)}")
        return self.files.accounts[username]

    def door(self, door: str) -> Account:
        """The account of door ``door`` (``scan-room`` or ``vault``) of the test site."""
        return self.files.accounts[door_username(door)]

    def topic(self, door: str | None, *parts: str) -> str:
        """``topic("scan-room", "events", "access", "passage")`` → ``accessctl/hn-archive-1/scan-room/events/access/passage``;
        ``topic(None, "time")`` → the site's time topic."""
        return "/".join([self.prefix, self.site, *([door] if door else []), *parts])

    # ------------------------------------------------------------ process
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 5.0) -> None:
        """Start (or restart) the broker on the same port; return once it is serving.

        Ready means the log says "running": the listener is open and the signal handlers
        are installed, so an immediate :meth:`stop` still saves the persistence database.
        """
        if self.running:
            return
        t0 = time.monotonic()
        self.generation += 1
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        stderr = open(self.workdir / "stderr.log", "ab")
        self._proc = subprocess.Popen([find_program("mosquitto"), "-c", str(self.config_file)],
                                      stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                      cwd=self.workdir)
        stderr.close()
        while time.monotonic() - t0 < timeout:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}:\n{self.log_text()}")
            if self.log_file.exists():
                with open(self.log_file, "rb") as f:
                    f.seek(offset)
                    if b" running" in f.read():
                        self.startup_s = time.monotonic() - t0
                        log.debug("mosquitto on port %d up in %.3f s", self.port, self.startup_s)
                        return
            time.sleep(0.002)
        self.stop(kill=True)
        raise RuntimeError(f"mosquitto did not start within {timeout} s:\n{self.log_text()}")

    def stop(self, *, kill: bool = False, timeout: float = 5.0) -> None:
        """Stop the broker: SIGTERM (it saves its persistence database) or, with ``kill``, SIGKILL."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def install_crl(self, crl: Path, timeout: float = 5.0) -> None:
        """Use ``crl`` as this broker's revocation list and reload the broker (SIGHUP)."""
        shutil.copyfile(crl, self.crl_file)
        if not self.running:
            return
        offset = self.log_file.stat().st_size
        self._proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_file, "rb") as f:
                f.seek(offset)
                if b"Reloading config" in f.read():
                    return
            time.sleep(0.01)
        raise RuntimeError(f"mosquitto did not reload within {timeout} s:\n{self.log_text()}")

    def log_text(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.workdir / "stderr.log", self.log_file) if p.exists()]
        return "".join(parts)

    # ------------------------------------------------------------ clients
    def paho_client(self, username: str | None = SUPERVISOR, *, protocol: int = 5, client_id: str = "",
                    password: str | None = None, ca_file: Path | None = None,
                    client_cert: bool = True, clean_start: bool = True,
                    certificate: Account | None = None) -> mqtt.Client:
        """A paho-mqtt 2.x client set up for this broker (TLS, credentials), not connected.

        ``username`` names the account whose certificate the client presents (``SUPERVISOR``:
        the next supervisor account, see the module's docstring) and whose username and
        password it sends; ``username=None`` sends no username; ``password`` overrides the
        account's; ``certificate`` presents another account's certificate and key;
        ``ca_file`` overrides the trusted CA; ``client_cert=False`` sends no certificate.
        """
        return self._paho_client(self._account_for(username, client_id), protocol=protocol, client_id=client_id,
                                 password=password, ca_file=ca_file, client_cert=client_cert,
                                 clean_start=clean_start, certificate=certificate)

    def _paho_client(self, account: Account | None, *, protocol: int, client_id: str, password: str | None,
                     ca_file: Path | None, client_cert: bool, clean_start: bool,
                     certificate: Account | None) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5 if protocol == 5 else mqtt.MQTTv311,
                        clean_session=None if protocol == 5 else clean_start)
        cert_account = certificate or account or self.files.accounts[SUPERVISOR]
        c.tls_set(ca_certs=str(ca_file or self.ca_file),
                  certfile=str(cert_account.cert_file) if client_cert else None,
                  keyfile=str(cert_account.key_file) if client_cert else None, cert_reqs=ssl.CERT_REQUIRED)
        if account is not None:
            c.username_pw_set(account.username, password if password is not None else account.password)
        c.reconnect_delay_set(min_delay=0.05, max_delay=0.5)
        return c

    def connect(self, username: str | None = SUPERVISOR, *, protocol: int = 5, client_id: str = "",
                password: str | None = None, ca_file: Path | None = None, client_cert: bool = True,
                clean_start: bool = True, session_expiry_s: int = 0,
                will: tuple[str, bytes | str, int, bool] | None = None,
                certificate: Account | None = None, timeout: float = 5.0) -> MqttTestClient:
        """A connected :class:`MqttTestClient` logged in as ``username``.

        Raises :class:`ConnectRefused` when the broker refuses (``reason_code`` is the
        CONNACK's) and ``ssl.SSLError`` when the TLS handshake fails on our side. For a
        client that must get what was published while it was away (outage tests), give
        a ``client_id``, ``clean_start=False`` and ``session_expiry_s``.
        """
        account = self._account_for(username, client_id)
        c = self._paho_client(account, protocol=protocol, client_id=client_id, password=password,
                              ca_file=ca_file, client_cert=client_cert, clean_start=clean_start,
                              certificate=certificate)
        if will is not None:
            topic, payload, qos, retain = will
            c.will_set(topic, payload, qos, retain)
        tc = MqttTestClient(c, account.username if account else None, self)
        if protocol == 5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry_s
            c.connect(self.host, self.port, keepalive=30, clean_start=clean_start, properties=props)
        else:
            c.connect(self.host, self.port, keepalive=30)
        c.loop_start()
        try:
            tc._wait(lambda: tc.connack is not None or tc.disconnected is not None, timeout, "CONNACK")
        except TimeoutError:
            c.loop_stop()
            raise ConnectRefused(f"{username}: no CONNACK within {timeout} s") from None
        if tc.connack is None or tc.connack.is_failure:
            c.loop_stop()
            rc = tc.connack or tc.disconnected
            raise ConnectRefused(f"{username}: broker refused the connection: {rc}", rc)
        self._clients.append(tc)
        return tc

    def close_clients(self) -> None:
        for tc in self._clients:
            try:
                tc.disconnect()
            except Exception:  # already gone with the broker
                pass
        self._clients.clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
