"""What `accessctl doctor` looks at on the machine, behind one injectable object.

:class:`Probes` holds every fact-finding function the checks use, so a test
can point them at a fake tree (``root`` is where ``/dev`` and ``/sys`` are
looked up) or replace one answer (the NTP state of the test host is not the
test's to choose). The defaults look at the real machine.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from firmware_py.link.broker import BrokerSettings, connect, make_client

TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised (STA_UNSYNC)


def ntp_synchronised() -> bool | None:
    """Whether the kernel clock is disciplined by a time server; None when it cannot be told.

    Asks ``timedatectl`` (systemd's view, as chrony reports it) and, where
    there is no systemd bus, the kernel itself through ``adjtimex(2)``.
    """
    try:
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                             capture_output=True, text=True, timeout=3)
        if out.returncode == 0 and out.stdout.strip() in ("yes", "no"):
            return out.stdout.strip() == "yes"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex with modes = 0: read only
        state = libc.adjtimex(timex)
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != TIME_ERROR


def pcsc_readers() -> list[str] | None:
    """The reader names pcscd lists; None when the PC/SC service does not answer.

    Raises ImportError when pyscard is not installed.
    """
    from firmware_py.service.devices import pcsc_reader_names

    return pcsc_reader_names()


def module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def door_service_pid(database: Path) -> int | None:
    """The process of the door service running on ``database`` (it holds ``DATABASE.lock``), or None.

    Tests the lock as :func:`firmware_py.storage.db.hold_database` takes it, without creating the file;
    the pid is what the service wrote there (0 when it cannot be read).
    """
    import fcntl

    try:
        fd = os.open(f"{database}.lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file: no service has run here
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else 0
    finally:
        os.close(fd)  # also drops our test lock at once
    return None


@dataclass
class Probes:
    """The machine as the doctor sees it.

    ``root``: the directory holding ``dev/`` and ``sys/`` (``/`` on the Pi);
    device paths from the configuration (serial ports) are looked up under it
    too. ``environ``: the environment (``GPIOZERO_PIN_FACTORY``).
    ``service_user``: who must own the state files (``None``: do not check).
    ``door_service_pid``: the running door service's process on a database, or None.
    """

    root: Path = Path("/")
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    ntp_synchronised: Callable[[], bool | None] = ntp_synchronised
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    pcsc_readers: Callable[[], list[str] | None] = pcsc_readers
    module_available: Callable[[str], bool] = module_available
    service_user: str | None = "accessctl"
    door_service_pid: Callable[[Path], int | None] = door_service_pid
    retained_message: Callable[..., bytes | None] = lambda settings, topic, *, timeout: retained_message(
        settings, topic, timeout=timeout)

    def path(self, system_path: str | Path) -> Path:
        """``/dev/gpiochip0`` inside :attr:`root`."""
        p = Path(system_path)
        if Path(self.root) == Path("/") or not p.is_absolute():
            return p
        return Path(self.root) / p.relative_to("/")

    def wireless_devices(self) -> list[str]:
        """Wi-Fi interfaces and radios, and Bluetooth controllers, as ``kind name`` strings."""
        found = []
        net = self.path("/sys/class/net")
        for iface in sorted(net.iterdir()) if net.is_dir() else ():
            if (iface / "wireless").exists() or (iface / "phy80211").exists():
                found.append(f"Wi-Fi interface {iface.name}")
        radios = self.path("/sys/class/ieee80211")
        for phy in sorted(radios.iterdir()) if radios.is_dir() else ():
            found.append(f"Wi-Fi radio {phy.name}")
        bt = self.path("/sys/class/bluetooth")
        for dev in sorted(bt.iterdir()) if bt.is_dir() else ():
            if ":" not in dev.name:  # hci0:11 and the like are connections of hci0, not devices
                found.append(f"Bluetooth controller {dev.name}")
        return found


@dataclass(frozen=True)
class BrokerAnswer:
    accepted: bool
    reason: str  # the CONNACK's reason ("Success", "Not authorized", ...) or why the link dropped
    tls_version: str | None  # "TLSv1.3", or None on plain text
    seconds: float  # from the first packet to the answer


def probe_broker(settings: BrokerSettings, *, timeout: float = 5.0) -> BrokerAnswer:
    """Log in to the broker as ``settings`` say (TLS, certificate, account), then leave.

    Only while the door's service is stopped: Mosquitto names the session after the
    certificate's account, so this login would replace the running door's own connection
    (:func:`probe_tls` checks a running door's broker without logging in). Raises what
    connecting raises: ``ConnectionRefusedError``, ``socket.gaierror``, ``ssl.SSLError``,
    ``TimeoutError`` (no answer within ``timeout``), ``OSError``.
    """
    import ssl
    import time

    settings = replace(settings, keepalive_s=max(5, int(timeout) + 1), persistent_session=False)
    client = make_client(settings)
    client.connect_timeout = timeout
    answer: dict = {}
    client.on_connect = lambda c, u, flags, rc, props: answer.setdefault("rc", rc)
    client.on_disconnect = lambda c, u, flags, rc, props: answer.setdefault(
        "rc", f"the broker closed the connection without accepting the login ({rc})")
    started = time.monotonic()
    connect(client, settings, background=False)
    try:
        sock = client.socket()
        tls_version = sock.version() if isinstance(sock, ssl.SSLSocket) else None
        deadline = started + timeout
        while "rc" not in answer:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no CONNACK within {timeout} s")
            client.loop(timeout=0.05)
        rc = answer["rc"]
        seconds = time.monotonic() - started
        accepted = not isinstance(rc, str) and not rc.is_failure and client.is_connected()
        return BrokerAnswer(accepted, str(rc), tls_version, seconds)
    finally:
        _hang_up(client)


def _hang_up(client) -> None:
    """Disconnect and close the socket, whatever state the login ended in."""
    if client.is_connected():
        client.disconnect()
        client.loop(timeout=0.05)
    sock = client.socket()
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


RETAINED_WAIT_S = 1.0  # after the subscription is granted, how long a retained copy may take to arrive


def retained_message(settings: BrokerSettings, topic: str, *, timeout: float = 5.0) -> bytes | None:
    """The message retained on ``topic``, read by logging in as ``settings`` say; None when there is none.

    Only while the door's service is stopped (see :func:`probe_broker`). Raises what connecting
    raises, and ``ConnectionError`` when the broker refuses the login or the subscription.
    """
    import time

    settings = replace(settings, keepalive_s=max(5, int(timeout) + 1), persistent_session=False)
    client = make_client(settings)
    client.connect_timeout = timeout
    state: dict = {}
    client.on_connect = lambda c, u, flags, rc, props: state.setdefault("connack", rc)
    client.on_subscribe = lambda c, u, mid, codes, props: state.setdefault("suback", codes)
    client.on_message = lambda c, u, message: state.setdefault("payload", bytes(message.payload))
    connect(client, settings, background=False)
    try:
        deadline = time.monotonic() + timeout
        while "connack" not in state:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no CONNACK within {timeout} s")
            client.loop(timeout=0.05)
        if state["connack"].is_failure:
            raise ConnectionError(f"the broker refused the login: {state['connack']}")
        client.subscribe(topic, qos=1)
        while "suback" not in state:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no SUBACK for {topic} within {timeout} s")
            client.loop(timeout=0.05)
        if any(code.is_failure for code in state["suback"]):
            raise ConnectionError(f"the broker refused the subscription to {topic}: {state['suback'][0]}")
        granted = time.monotonic()
        while "payload" not in state and time.monotonic() - granted < RETAINED_WAIT_S:
            client.loop(timeout=0.05)
        return state.get("payload") or None
    finally:
        _hang_up(client)


@dataclass(frozen=True)
class TlsAnswer:
    tls_version: str | None  # "TLSv1.3", or None on plain text
    seconds: float


CERTIFICATE_VERDICT_S = 0.5  # a broker that refuses the client certificate says so within this after the handshake


def probe_tls(settings: BrokerSettings, *, timeout: float = 5.0) -> TlsAnswer:
    """Reach the broker and shake hands over TLS with the client certificate, without an MQTT login.

    Checks the broker's certificate against ``ca_file`` and that the broker accepts this client's
    certificate (TLS 1.3 brokers refuse it just after the handshake: an alert within
    ``CERTIFICATE_VERDICT_S``). Whether the certificate's account may log in is not tried.
    On ``mqtt://`` only the TCP connection is made. Raises as :func:`probe_broker` does.
    """
    import socket
    import ssl
    import time

    started = time.monotonic()
    sock = socket.create_connection((settings.host, settings.port), timeout=timeout)
    try:
        if not settings.tls:
            return TlsAnswer(None, time.monotonic() - started)
        context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
        if not settings.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if settings.cert_file:
            context.load_cert_chain(settings.cert_file, settings.key_file)
        sock = context.wrap_socket(sock, server_hostname=settings.host)
        seconds = time.monotonic() - started
        sock.settimeout(CERTIFICATE_VERDICT_S)
        try:
            if sock.recv(1) == b"":
                raise ssl.SSLError("the broker closed the connection after the TLS handshake "
                                   "(it does not accept this client certificate)")
        except TimeoutError:
            pass  # nothing said: the broker waits for our CONNECT, so it took the certificate
        return TlsAnswer(sock.version(), seconds)
    finally:
        sock.close()
