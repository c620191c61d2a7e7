"""The controller service as `accessctl run --simulate` runs it, minus the badge readers; for bench.memory.

    python -m bench.service_child CONFIG

The same steps as :func:`firmware_py.cli.run.cmd_run` with ``--simulate``:
load the config, build the service on simulated hardware
(:func:`~firmware_py.service.simulated.build_simulated_service`: real
drivers on MockFactory pins and pty ID readers) on the system clock, install
the signal handlers and run the service loop, which tells systemd's notify
socket (``NOTIFY_SOCKET``) ``READY=1`` once the controller has started. The
badge readers are left out because they need pcscd, which allows one instance
per machine and belongs to the test suite while it runs.

``python -m bench.service_child --bare DATABASE`` is the baseline: a Python
process that opens the same database with sqlite3, reads one row and says
``READY=1`` the same way.

With ``BENCH_TRACEMALLOC=FILE`` in the environment the controller traces its
allocations and writes the largest (by line) to FILE when it stops.
"""

from __future__ import annotations

import sys


def controller(config: str) -> int:
    import os

    trace = os.environ.get("BENCH_TRACEMALLOC")
    if trace:
        import tracemalloc

        tracemalloc.start()
    from firmware_py.config.schema import load_config
    from firmware_py.service.bootstrap import install_signal_handlers
    from firmware_py.service.sdnotify import Notifier
    from firmware_py.service.simulated import build_simulated_service

    cfg = load_config(config)
    service = build_simulated_service(cfg, badges=False)
    install_signal_handlers(service)
    service.run(Notifier.from_env())
    if trace:
        snapshot = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
        lines = [f"traced Python allocations: {current / 2**20:.1f} MiB now, {peak / 2**20:.1f} MiB at the peak"]
        lines += [str(stat) for stat in snapshot.statistics("filename")[:15]]
        with open(trace, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return 0


def bare(database: str) -> int:
    import os
    import signal
    import socket
    import sqlite3

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    conn = sqlite3.connect(database)
    conn.execute("SELECT count(*) FROM persons").fetchone()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
    signal.sigwait({signal.SIGTERM})
    conn.close()
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(bare(args[1]) if args[:1] == ["--bare"] else controller(args[0]))
