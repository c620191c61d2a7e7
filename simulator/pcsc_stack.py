"""The real PC/SC stack for the simulator and the tests: ``pcscd`` with vsmartcard's virtual reader driver (vpcd).

Each process that simulates badges (a simulator, a test session) gets its own
PC/SC stack, so that N simulated doors run side by side on one machine and none
reads another's badges, and a test session runs beside any other ``pcscd``:

- ``pcscd --foreground`` runs as a child process (never the system service) in
  its own mount namespace, where a private directory is bind-mounted over
  ``/run/pcscd`` (pcscd 1.9.9 puts its socket there whatever
  ``PCSCLITE_CSOCK_NAME`` says). The machine's ``/run/pcscd`` is untouched.
- The process's own PC/SC clients (pyscard, the badge drivers) reach it through
  ``PCSCLITE_CSOCK_NAME``, which libpcsclite reads once, at the process's first
  PC/SC call: :func:`private_socket_dir` sets it, before that call.
- Its private reader configuration loads only vpcd, on a pair of free TCP ports
  chosen at start (``DEVICENAME /dev/null:PORT``): ``Virtual PCD 00 00`` takes
  cards on ``PORT``, ``Virtual PCD 00 01`` on ``PORT + 1``
  (:attr:`Pcscd.card_ports`). Cards are played by
  :class:`simulator.virtual_badge.VirtualBadge`.

Unplugging a reader: pcsc-lite cannot remove a reader that comes from a
``reader.conf.d`` entry while it runs. ``pcscd --hotplug`` re-reads the
configuration, but only adds readers (it removes one only if its driver reports
a communication error, which vpcd never does) and refuses a configuration that
changed since start-up. So :meth:`Pcscd.unplugged` stops pcscd (the service
goes away, as when it crashes) and can bring it back first *without* the vpcd
reader (the service runs but the reader is missing, which is what a client
sees when a USB reader is pulled out), then with it (plugged back in).

pcscd and the mount namespace need root; without it badges are not simulated.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

VPCD_READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")
SYSTEM_CARD_PORTS = {"Virtual PCD 00 00": 35963, "Virtual PCD 00 01": 35964}
"""vpcd's ports under Debian's own /etc/reader.conf.d/vpcd (a pcscd started by hand or by systemd)."""
SOCKET_ENV = "PCSCLITE_CSOCK_NAME"
INSTALL_HINT = ("apt-get install pcscd vsmartcard-vpcd swig libpcsclite-dev && pip install pyscard "
                "(the README's test command does this)")

_VPCD_CONF = """\
# vsmartcard's virtual reader for this simulator or test session only: card ports {port} and {port} + 1
FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:{port}
LIBPATH      {libpath}
CHANNELID    0x8C7B
"""

_socket_dir: Path | None = None
_active: Pcscd | None = None


def private_socket_dir() -> Path:
    """Where this process's own pcscd keeps its socket; points ``PCSCLITE_CSOCK_NAME`` there.

    Call it before the process's first PC/SC call (libpcsclite reads the variable once);
    the test fixtures call it when they are imported. Child processes inherit the
    variable, so a tool started from here (``accessctl doctor``) sees the same pcscd.
    """
    global _socket_dir
    if _socket_dir is None:
        _socket_dir = Path(tempfile.gettempdir()) / f"accessctl-pcsc-{os.getpid()}"
        os.environ[SOCKET_ENV] = str(_socket_dir / "pcscd.comm")
    return _socket_dir


def active_pcscd() -> Pcscd | None:
    """This process's own running pcscd, if any."""
    return _active if _active is not None and _active.running else None


def find_pcscd() -> str | None:
    return shutil.which("pcscd") or next((p for p in ("/usr/sbin/pcscd", "/usr/local/sbin/pcscd")
                                          if os.access(p, os.X_OK)), None)


def find_vpcd_driver() -> str | None:
    dirs = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pkg-config", "--variable=usbdropdir", "libpcsclite"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
        if out:
            dirs.append(out)
    dirs += ["/usr/lib/pcsc/drivers", "/usr/lib/*/pcsc/drivers", "/usr/local/lib/pcsc/drivers"]
    for d in dirs:
        hits = sorted(glob.glob(f"{d}/serial/libifdvpcd.so*"))
        if hits:
            return hits[0]
    return None


def free_port_pair(host: str = "0.0.0.0") -> int:
    """A port P with P and P + 1 free (vpcd listens on both, on every interface)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind((host, 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind((host, port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two consecutive free TCP ports for vpcd")


def missing_pcsc_stack() -> str | None:
    """What keeps the real PC/SC stack from running here, or None."""
    try:
        import smartcard.scard  # noqa: F401
    except ImportError as exc:
        return f"pyscard cannot be imported ({exc}): {INSTALL_HINT}"
    if os.geteuid() != 0:
        return ("pcscd and its private mount namespace need root: run as root, as the README's test "
                "command does")
    if find_pcscd() is None:
        return f"pcscd is not installed: {INSTALL_HINT}"
    if find_vpcd_driver() is None:
        return f"the vpcd reader driver (libifdvpcd.so, package vsmartcard-vpcd) is not installed: {INSTALL_HINT}"
    return None


def list_readers() -> list[str] | None:
    """The PC/SC readers pcscd lists, or None if the service does not answer."""
    from drivers.badge_reader import list_readers as pcsc_list  # imports pyscard only when asked

    return pcsc_list()


def wait_until_empty(reader: str, timeout: float = 2.0) -> bool:
    """Wait until pcscd reports no card on ``reader`` (it notices a removal at its next
    presence poll, every 400 ms); False on timeout or if the service does not answer."""
    from smartcard import scard

    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return False
    try:
        deadline = time.monotonic() + timeout
        state = scard.SCARD_STATE_UNAWARE
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return False
            hresult, states = scard.SCardGetStatusChange(context, left_ms, [(reader, state)])
            if hresult != scard.SCARD_S_SUCCESS:
                return False
            state = states[0][1] & ~scard.SCARD_STATE_CHANGED
            if state & scard.SCARD_STATE_EMPTY:
                return True
    finally:
        scard.SCardReleaseContext(context)


_CLONE_NEWNS = 0x00020000
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 0x40000


def _private_run_dir(run_dir: str):
    """The ``preexec_fn`` of pcscd: in the child, before exec (one thread, so unshare is whole)."""

    def setup() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        # SIGTERM when the process that started pcscd dies, even by SIGKILL: a killed
        # simulator leaves no pcscd behind
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

        def check(result: int, what: str) -> None:
            if result != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"{what}: {os.strerror(errno)}")

        check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        # private first, or the bind mount below would propagate back to the machine's /run
        check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
        os.makedirs("/run/pcscd", exist_ok=True)
        check(libc.mount(run_dir.encode(), b"/run/pcscd", None, _MS_BIND, None),
              f"mount --bind {run_dir} /run/pcscd")

    return setup


class Pcscd:
    """One ``pcscd --foreground`` child process: a private ``/run/pcscd``, only vpcd's readers, free card ports.

    :param workdir: its reader configuration and log.
    :param run_dir: where its socket appears for this process's clients (default:
        :func:`private_socket_dir`, which ``PCSCLITE_CSOCK_NAME`` names).
    :param port: vpcd's first card port (default: a free pair, chosen now).
    """

    def __init__(self, workdir: Path, *, run_dir: Path | None = None, port: int | None = None):
        self.executable = find_pcscd()
        workdir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir or private_socket_dir()
        self.log_path = workdir / "pcscd.log"
        self.port = port or free_port_pair()
        self.card_ports = {VPCD_READERS[0]: self.port, VPCD_READERS[1]: self.port + 1}
        self.config_dir = workdir / "reader.conf.d"
        self.config_dir.mkdir(exist_ok=True)
        (self.config_dir / "vpcd").write_text(_VPCD_CONF.format(libpath=find_vpcd_driver(), port=self.port))
        self.no_readers_dir = workdir / "no-readers.d"  # pcscd with no reader configured
        self.no_readers_dir.mkdir(exist_ok=True)
        self.process: subprocess.Popen | None = None
        self.ready_s: float | None = None  # how long the last start took until readers were listed
        self.readers: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Pcscd(socket={self.socket_path}, card ports {self.port} and {self.port + 1})"

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "pcscd.comm"

    def port_of(self, reader: str) -> int:
        """vpcd's card port of ``reader`` (``Virtual PCD 00 00`` or ``Virtual PCD 00 01``)."""
        return self.card_ports[reader]

    def command(self, *, readers: bool = True) -> list[str]:
        config = self.config_dir if readers else self.no_readers_dir
        return [self.executable, "--foreground", "--info", "--apdu", "--config", str(config)]

    def start(self, *, readers: bool = True, timeout: float = 10.0) -> None:
        """Start pcscd; return once it lists the vpcd readers (or, without readers, answers)."""
        global _active
        if self.process is not None:
            raise RuntimeError("pcscd is already running")
        if os.environ.get(SOCKET_ENV) != str(self.socket_path):
            raise RuntimeError(f"{SOCKET_ENV} is {os.environ.get(SOCKET_ENV)!r}, not {self.socket_path}: this "
                               "process's PC/SC clients would not reach this pcscd (see private_socket_dir)")
        if _active is not None and _active is not self and _active.running:
            raise RuntimeError(f"this process already runs {_active!r}; its clients can reach one pcscd only")
        started = time.monotonic()
        self.run_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- {' '.join(self.command(readers=readers))} (private /run/pcscd = {self.run_dir})\n"
                      .encode())
            log.flush()
            self.process = subprocess.Popen(self.command(readers=readers), stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=_private_run_dir(str(self.run_dir)))
        _active = self
        deadline = started + timeout
        while True:
            listed = list_readers() if self.socket_path.exists() else None
            if listed is not None and (not readers or all(r in listed for r in VPCD_READERS)):
                break
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RuntimeError(f"pcscd exited with status {code}; see {self.log_path}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pcscd did not list the vpcd readers within {timeout} s "
                                   f"(listed: {listed}); see {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.01)
        self.ready_s = time.monotonic() - started
        self.readers = tuple(listed)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop pcscd (SIGTERM, then SIGKILL); the PC/SC service is gone afterwards."""
        process, self.process = self.process, None
        self.readers = ()
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        for leftover in ("pcscd.comm", "pcscd.pid"):  # left by a killed pcscd
            with contextlib.suppress(OSError):
                (self.run_dir / leftover).unlink()
        with contextlib.suppress(OSError):
            self.run_dir.rmdir()

    def restart(self, *, readers: bool = True) -> None:
        self.stop()
        self.start(readers=readers)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @contextlib.contextmanager
    def unplugged(self) -> Iterator[Pcscd]:
        """Within the block the readers are gone (pcscd stopped; call :meth:`start` with
        ``readers=False`` inside to have the service back without them). On leaving,
        pcscd runs again with both readers: they are plugged back in."""
        self.stop()
        try:
            yield self
        finally:
            self.restart(readers=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""



@dataclass
class BadgeStack:
    """Whether simulated badges can be read here, and why not; ``card_ports``: vpcd's port by reader."""

    available: bool
    why: str = ""
    card_ports: dict[str, int] = field(default_factory=lambda: dict(SYSTEM_CARD_PORTS))


@contextlib.contextmanager
def badge_stack(workdir: Path | None = None) -> Iterator[BadgeStack]:
    """This process's own pcscd with the vpcd readers for the length of the block: the one
    already running in this process (a test session's), else one started now and stopped
    after; unavailable when this machine cannot run it. Never another process's pcscd."""
    running = active_pcscd()
    if running is not None:
        yield BadgeStack(True, card_ports=dict(running.card_ports))
        return
    missing = missing_pcsc_stack()
    if missing:
        yield BadgeStack(False, missing)
        return
    with tempfile.TemporaryDirectory(prefix="accessctl-pcscd-") as tmp:
        try:
            daemon = Pcscd(Path(workdir or tmp))
            daemon.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            yield BadgeStack(False, str(exc))
            return
        try:
            yield BadgeStack(True, card_ports=dict(daemon.card_ports))
        finally:
            daemon.stop()
