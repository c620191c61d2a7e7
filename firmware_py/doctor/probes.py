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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

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
    from drivers.badge_reader import list_readers as pcsc_list  # imports pyscard only when asked

    return pcsc_list()


def module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class Probes:
    """The machine as the doctor sees it.

    ``root``: the directory holding ``dev/`` and ``sys/`` (``/`` on the Pi);
    device paths from the configuration (serial ports) are looked up under it
    too. ``environ``: the environment (``GPIOZERO_PIN_FACTORY``).
    ``service_user``: who must own the state files (``None``: do not check).
    """

    root: Path = Path("/")
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    ntp_synchronised: Callable[[], bool | None] = ntp_synchronised
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    pcsc_readers: Callable[[], list[str] | None] = pcsc_readers
    module_available: Callable[[str], bool] = module_available
    service_user: str | None = "accessctl"

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


def probe_broker(cfg, *, timeout: float = 5.0) -> BrokerAnswer:
    """Log in to the configured broker as the door would (TLS, certificate, password), then leave.

    Uses a client id of its own (``<client_id>-doctor``) so a running
    controller's session is never taken over. Raises what connecting raises:
    ``ConnectionRefusedError``, ``socket.gaierror``, ``ssl.SSLError``,
    ``TimeoutError`` (no answer within ``timeout``), ``OSError``.
    """
    import ssl
    import time
    from urllib.parse import urlsplit

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    m = cfg.mqtt
    url = urlsplit(m.broker)
    v5 = m.protocol == 5
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{m.client_id}-doctor",
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, clean_session=None if v5 else True)
    client.connect_timeout = timeout
    if url.scheme == "mqtts":
        client.tls_set(ca_certs=str(m.ca_file) if m.ca_file else None,
                       certfile=str(m.cert_file) if m.cert_file else None,
                       keyfile=str(m.key_file) if m.key_file else None,
                       cert_reqs=ssl.CERT_REQUIRED if m.tls_verify else ssl.CERT_NONE)
        client.tls_insecure_set(not m.tls_verify)
    if m.username:
        password = m.password_file.read_text(encoding="utf-8").splitlines()[0] if m.password_file else None
        client.username_pw_set(m.username, password)
    answer: dict = {}
    client.on_connect = lambda c, u, flags, rc, props: answer.setdefault("rc", rc)
    client.on_disconnect = lambda c, u, flags, rc, props: answer.setdefault(
        "rc", f"the broker closed the connection without accepting the login ({rc})")
    started = time.monotonic()
    client.connect(url.hostname, url.port, keepalive=max(5, int(timeout) + 1))
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
        if client.is_connected():
            client.disconnect()
            client.loop(timeout=0.05)
        sock = client.socket()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
