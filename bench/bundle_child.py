"""A door applying one roster bundle, for bench.bundle's memory figure.

    python -m bench.bundle_child CONFIG MESSAGES_DIR

Opens the door's store through its receiver (:class:`firmware_py.link.roster_receiver.RosterReceiver`),
reads the bundle's messages from ``MESSAGES_DIR`` (``*.msg``, in name order: chunks, then the
manifest), notes the peak resident set (VmHWM), hands the messages to the receiver and prints one
JSON line: the peak before and after, in MB, and the seconds from the first message to applied.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _hwm_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(config: str, messages_dir: str) -> int:
    from firmware_py.config.schema import load_config
    from firmware_py.core.clock import SimulatedClock
    from firmware_py.link.roster_keys import door_keys
    from firmware_py.link.roster_receiver import RosterReceiver

    from .data import BENCH_START

    cfg = load_config(config)
    receiver = RosterReceiver(cfg, door_keys(cfg), clock=SimulatedClock(BENCH_START))
    paths = sorted(Path(messages_dir).glob("*.msg"))
    before = _hwm_mb()
    t0 = time.perf_counter()
    for path in paths:
        receiver.handle(path.read_bytes())
    seconds = time.perf_counter() - t0
    version = receiver.version
    receiver.close()
    if version == 0:
        print(f"the bundle was not applied: see the events in {cfg.storage.database}", file=sys.stderr)
        return 1
    print(json.dumps({"before_mb": round(before, 1), "peak_mb": round(_hwm_mb(), 1), "apply_s": round(seconds, 2),
                      "messages": len(paths), "version": version}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
