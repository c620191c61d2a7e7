"""Benchmark 4: resident memory and start-up time of the running controller.

The controller runs in a child process as `accessctl run --simulate` does
(:mod:`bench.service_child`: the real controller and drivers on emulated
hardware, MQTT off in its config, badge readers left out because they need
the machine's one pcscd). The parent plays systemd: it passes a
``NOTIFY_SOCKET`` and times from starting the process until ``READY=1``
arrives, which the service sends once the controller has started (drivers
open, ``controller_started`` stored). Then it samples ``VmRSS`` from
``/proc/PID/status`` for a while and reads ``VmHWM`` (the peak), and stops
the child with SIGTERM.

Baseline, same run: a bare Python process that opens the same database with
``sqlite3``, reads one row and says ``READY=1`` the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from firmware_py.config.schema import Config
from firmware_py.storage.db import open_db

from .common import REPO, Result, check, log
from .data import Workspace

TARGET_RSS_MB = 80.0
TARGET_STARTUP_S = 2.0
SETTLE_S = 1.5  # after ready, the door runs this long while its memory is sampled


def _status_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def run_child(args: list[str], directory: Path, *, settle_s: float = SETTLE_S, timeout: float = 30.0,
              env: dict | None = None) -> dict:
    """Start ``python -m bench.service_child ARGS``; time it to READY=1; sample its memory; stop it."""
    sock_path = directory / f"notify-{uuid.uuid4().hex[:8]}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHDOG_")}
    child_env.update(env or {}, NOTIFY_SOCKET=str(sock_path), PYTHONPATH=str(REPO))
    log_path = directory / f"child-{sock_path.stem}.log"
    try:
        with open(log_path, "wb") as child_log:
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "bench.service_child", *args], cwd=REPO, env=child_env,
                                    stdin=subprocess.DEVNULL, stdout=child_log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            ready_s = None
            while ready_s is None:
                sock.settimeout(max(0.01, min(0.5, deadline - time.monotonic())))
                try:
                    message = sock.recv(4096)
                except TimeoutError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the child did not get ready (exit {proc.poll()}): "
                                           f"{log_path.read_text(errors='replace')[-800:]}") from None
                    continue
                if b"READY=1" in message.split(b"\n"):
                    ready_s = time.perf_counter() - t0
            rss = [_status_kb(proc.pid)["VmRSS"]]
            end = time.monotonic() + settle_s
            while time.monotonic() < end:
                time.sleep(0.1)
                rss.append(_status_kb(proc.pid)["VmRSS"])
            hwm = _status_kb(proc.pid)["VmHWM"]
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
    finally:
        sock.close()
        sock_path.unlink(missing_ok=True)
    return {"ready_s": round(ready_s, 3), "rss_mb": round(max(rss) / 1024, 1), "hwm_mb": round(hwm / 1024, 1),
            "exit_code": code}


def _started_events(cfg: Config) -> int:
    db = open_db(cfg.storage.database)
    try:
        return db.execute("SELECT count(*) FROM events WHERE type = 'controller_started'").fetchone()[0]
    finally:
        db.conn.close()


def measure(cfg: Config, *, label: str, runs: int, result: Result, directory: Path) -> dict:
    log(f"memory: {label}: {runs} start(s) of the controller and of the bare baseline")
    before = _started_events(cfg)
    product = [run_child([str(cfg.path)], directory) for _ in range(runs)]
    started = _started_events(cfg) - before
    baseline = [run_child(["--bare", str(cfg.storage.database)], directory) for _ in range(runs)]
    hwm = max(r["hwm_mb"] for r in product)
    base_hwm = max(r["hwm_mb"] for r in baseline)
    ready = max(r["ready_s"] for r in product)
    base_ready = max(r["ready_s"] for r in baseline)
    result.add(check(f"resident memory (VmHWM), {label}", unit="MB", product=hwm, baseline=base_hwm,
                     target=f"≤ {TARGET_RSS_MB:g} MB", met=hwm <= TARGET_RSS_MB))
    row = result.add(check(f"start-up to ready (slowest of {runs}), {label}", unit="s", product=ready,
                           baseline=base_ready, target=f"≤ {TARGET_STARTUP_S:g} s",
                           met=ready <= TARGET_STARTUP_S and started == runs))
    figures = {
        "label": label,
        "product": product, "baseline": baseline, "controller_started_stored": started,
        "ready_s_median": round(statistics.median(r["ready_s"] for r in product), 3),
        "baseline_ready_s_median": round(statistics.median(r["ready_s"] for r in baseline), 3),
    }
    if hwm > TARGET_RSS_MB:
        trace = directory / "tracemalloc.txt"
        run_child([str(cfg.path)], directory, env={"BENCH_TRACEMALLOC": str(trace)})
        result.profile(f"resident memory (VmHWM), {label}", trace.read_text(encoding="utf-8"))
    if not row["met"]:
        prof = directory / "startup.prof"
        _profile_startup(cfg, prof, directory)
        result.profile(row["metric"], _read_profile(prof))
    return figures


def _profile_startup(cfg: Config, out: Path, directory: Path) -> None:
    """The child once more under cProfile (written when it stops)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sock_path = directory / "notify-profile.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    env["NOTIFY_SOCKET"] = str(sock_path)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "bench.service_child",
                                 str(cfg.path)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        sock.settimeout(60)
        try:
            sock.recv(4096)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    finally:
        sock.close()
        sock_path.unlink(missing_ok=True)


def _read_profile(path: Path) -> str:
    import io
    import pstats

    out = io.StringIO()
    pstats.Stats(str(path), stream=out).strip_dirs().sort_stats("cumulative").print_stats(20)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "function calls" in line), 0)
    return "\n".join(line.rstrip() for line in lines[start:] if line.strip())


def run(ws: Workspace, *, quick: bool, persons: int | None = None, runs: int | None = None,
        stored_events: int | None = None) -> Result:
    persons = persons or (10_000 if quick else 100_000)
    runs = runs or (1 if quick else 3)
    stored_events = stored_events if stored_events is not None else (0 if quick else 1_000_000)
    result = Result("memory", "Resident memory and start-up of the running controller", data_dir=ws.root,
                    quick=quick, params={"persons": persons, "runs": runs, "settle_s": SETTLE_S,
                                         "stored_events": stored_events})
    directory = ws.root / "memory"
    directory.mkdir(parents=True, exist_ok=True)
    cases = [measure(ws.roster_db(persons, f"memory-{persons}"), label=f"{persons:,} persons", runs=runs,
                     result=result, directory=directory)]
    if stored_events:
        cfg, _ = ws.events_db(persons, stored_events)
        cases.append(measure(cfg, label=f"{persons:,} persons + {stored_events:,} stored events", runs=runs,
                             result=result, directory=directory))
    result.detail("cases", cases)
    result.note("The child runs the controller as `accessctl run --simulate` does, on the system clock, with MQTT "
                "off and without the badge readers (they need the machine's single pcscd). The ID card readers' "
                "emulators run inside the same process, so the figure includes them; on a Pi they are devices.")
    result.note(f"Start-up is timed from starting the Python process until READY=1 on the notify socket "
                f"(sent after controller_started is stored), as systemd sees it; memory is the peak resident "
                f"set (VmHWM) after {SETTLE_S:g} s of running.")
    return result
