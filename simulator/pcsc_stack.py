"""The real PC/SC stack for the simulator and the tests: ``pcscd`` with vsmartcard's virtual reader driver (vpcd).

The session fixture ``pcscd`` starts ``pcscd --foreground`` as a child process
(never the system service) with a private reader configuration that loads only
vpcd, which makes two readers, ``Virtual PCD 00 00`` (card port 35963) and
``Virtual PCD 00 01`` (35964). Cards are played by
:class:`simulator.virtual_badge.VirtualBadge`.

Unplugging a reader: pcsc-lite cannot remove a reader that comes from a
``reader.conf.d`` entry while it runs. ``pcscd --hotplug`` re-reads the
configuration, but only adds readers (it removes one only if its driver reports
a communication error, which vpcd never does) and refuses a configuration that
changed since start-up. So :meth:`Pcscd.unplugged` stops pcscd (the service
goes away, as when it crashes) and can bring it back first *without* the vpcd
reader (the service runs but the reader is missing, which is what a client
sees when a USB reader is pulled out), then with it (plugged back in).

pcscd needs root (it owns ``/run/pcscd``) and only one instance can run on a
machine: if another one is serving, the tests skip rather than fight it.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


VPCD_READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")
PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
INSTALL_HINT = ("apt-get install pcscd vsmartcard-vpcd swig libpcsclite-dev && pip install pyscard "
                "(the README's test command does this)")

_VPCD_CONF = """\
# vsmartcard's virtual reader for the tests (same entry as Debian's /etc/reader.conf.d/vpcd)
FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:0x8C7B
LIBPATH      {libpath}
CHANNELID    0x8C7B
"""


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


def _other_pcscd_serving() -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(PCSCD_SOCKET)
        except OSError:
            return False
        return True


def missing_pcsc_stack() -> str | None:
    """What keeps the real PC/SC stack from running here, or None."""
    try:
        import smartcard.scard  # noqa: F401
    except ImportError as exc:
        return f"pyscard cannot be imported ({exc}): {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "pcscd must run as root (it owns /run/pcscd): run the tests as root, as the README's test command does"
    if find_pcscd() is None:
        return f"pcscd is not installed: {INSTALL_HINT}"
    if find_vpcd_driver() is None:
        return f"the vpcd reader driver (libifdvpcd.so, package vsmartcard-vpcd) is not installed: {INSTALL_HINT}"
    if _other_pcscd_serving():
        return (f"another pcscd is already serving {PCSCD_SOCKET} (only one can run per machine): "
                "stop it (systemctl stop pcscd.socket pcscd) and run the tests again")
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


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started pcscd dies, even by SIGKILL,
    so a killed simulator never leaves a pcscd holding /run/pcscd (one per machine)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Pcscd:
    """One ``pcscd --foreground`` child process with a private reader configuration."""

    def __init__(self, workdir: Path):
        self.executable = find_pcscd()
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "pcscd.log"
        self.config_dir = workdir / "reader.conf.d"
        self.config_dir.mkdir(exist_ok=True)
        (self.config_dir / "vpcd").write_text(_VPCD_CONF.format(libpath=find_vpcd_driver()))
        self.no_readers_dir = workdir / "no-readers.d"  # pcscd with no reader configured
        self.no_readers_dir.mkdir(exist_ok=True)
        self.process: subprocess.Popen | None = None
        self.ready_s: float | None = None  # how long the last start took until readers were listed
        self.readers: tuple[str, ...] = ()

    def command(self, *, readers: bool = True) -> list[str]:
        config = self.config_dir if readers else self.no_readers_dir
        return [self.executable, "--foreground", "--info", "--apdu", "--config", str(config)]

    def start(self, *, readers: bool = True, timeout: float = 10.0) -> None:
        """Start pcscd; return once it lists the vpcd readers (or, without readers, answers)."""
        if self.process is not None:
            raise RuntimeError("pcscd is already running")
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"--- {' '.join(self.command(readers=readers))}\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.command(readers=readers), stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=_die_with_parent)
        deadline = started + timeout
        while True:
            listed = list_readers()
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
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def restart(self, *, readers: bool = True) -> None:
        self.stop()
        self.start(readers=readers)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @contextlib.contextmanager
    def unplugged(self) -> Iterator["Pcscd"]:
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
    """Whether simulated badges can be read here, and why not."""

    available: bool
    why: str = ""


@contextlib.contextmanager
def badge_stack(workdir: Path | None = None) -> Iterator[BadgeStack]:
    """pcscd with the vpcd readers for the length of the block: reused when one already
    serves them, started (and stopped after) when this machine can, else unavailable."""
    listed = list_readers() if _other_pcscd_serving() else None
    if listed is not None and all(r in listed for r in VPCD_READERS):
        yield BadgeStack(True)
        return
    missing = missing_pcsc_stack()
    if missing:
        yield BadgeStack(False, missing)
        return
    with tempfile.TemporaryDirectory(prefix="accessctl-pcscd-") as tmp:
        daemon = Pcscd(Path(workdir or tmp))
        try:
            daemon.start()
        except RuntimeError as exc:
            yield BadgeStack(False, str(exc))
            return
        try:
            yield BadgeStack(True)
        finally:
            daemon.stop()
