"""What every benchmark shares: the machine's description, percentiles, results and profiles.

A result is one JSON document per benchmark in ``bench/results/<name>.json``::

    {"name": "decision", "title": ..., "started": ISO time, "seconds": run time, "quick": bool,
     "machine": {...}, "params": {...},
     "checks": [{"metric", "unit", "product", "baseline", "ratio", "target", "met"}, ...],
     "details": {...}, "notes": [...], "profiles": {metric: "cProfile top entries"}}

``checks`` are what docs/performance.md tabulates: the product's figure, the bare
baseline's figure measured in the same run, their ratio, the target as text and
whether it was met. Targets are never asserted here: a missed target is a result.
"""

from __future__ import annotations

import cProfile
import io
import json
import math
import os
import platform
import pstats
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


# --------------------------------------------------------------------------- the machine


def machine_info(data_dir: Path) -> dict:
    """CPU, cores, RAM, Python and SQLite versions, and the disk and file system holding ``data_dir``."""
    cpu = _first_value("/proc/cpuinfo", "model name") or platform.processor() or "unknown"
    mem_kb = _first_value("/proc/meminfo", "MemTotal")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_mb": round(int(mem_kb.split()[0]) / 1024) if mem_kb else None,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "data_dir": str(data_dir),
        "filesystem": filesystem_of(data_dir),
        "commit": _git_commit(),
        "load_before": _loadavg(),
    }


def _loadavg() -> str | None:
    """The 1, 5 and 15 minute load averages: other work on the machine shows up in the figures."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None


def _first_value(path: str, key: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def filesystem_of(path: Path) -> dict:
    """The mount holding ``path``: device, mount point and file-system type (from /proc/mounts)."""
    real = os.path.realpath(path)
    best = {"device": "unknown", "mount": "/", "type": "unknown"}
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                device, mount, fstype, *_ = line.split()
                mount = mount.replace("\\040", " ")
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best["mount"]):
                    best = {"device": device, "mount": mount, "type": fstype}
    except OSError:
        pass
    return best


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def describe_machine(m: dict) -> str:
    fs = m["filesystem"]
    return (f"{m['cpu']}, {m['cores']} cores, {m['ram_mb']:,} MB RAM; Python {m['python']}, SQLite {m['sqlite']}; "
            f"data on {fs['device']} ({fs['type']}, mounted at {fs['mount']})")


# --------------------------------------------------------------------------- figures


def percentile(samples: Iterable[float], q: float) -> float:
    """The nearest-rank percentile (``q`` in 0..100): a value that was actually measured."""
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(samples_s: list[float]) -> dict:
    """p50, p99, max and mean of durations in seconds, as milliseconds."""
    return {
        "n": len(samples_s),
        "p50_ms": round(percentile(samples_s, 50) * 1e3, 4),
        "p99_ms": round(percentile(samples_s, 99) * 1e3, 4),
        "max_ms": round(max(samples_s) * 1e3, 4),
        "mean_ms": round(sum(samples_s) / len(samples_s) * 1e3, 4),
    }


def check(metric: str, *, unit: str, product: float, baseline: float | None, target: str, met: bool,
          ratio: float | None = None) -> dict:
    """One row of the performance table. ``ratio`` defaults to product / baseline."""
    if ratio is None and baseline:
        ratio = product / baseline
    return {"metric": metric, "unit": unit, "product": _round(product), "baseline": _round(baseline),
            "ratio": None if ratio is None else round(ratio, 2), "target": target, "met": bool(met)}


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 3) if abs(value) < 100 else round(value, 1)


# --------------------------------------------------------------------------- results


class Result:
    """Collects one benchmark's figures and writes them as JSON."""

    def __init__(self, name: str, title: str, *, data_dir: Path, quick: bool, params: dict | None = None):
        self.doc: dict = {
            "name": name, "title": title,
            "started": datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
            "seconds": None, "quick": quick, "machine": machine_info(data_dir), "params": params or {},
            "checks": [], "details": {}, "notes": [], "profiles": {},
        }
        self._t0 = time.monotonic()

    @property
    def checks(self) -> list[dict]:
        return self.doc["checks"]

    def add(self, row: dict) -> dict:
        self.doc["checks"].append(row)
        return row

    def detail(self, key: str, value) -> None:
        self.doc["details"][key] = value

    def note(self, text: str) -> None:
        self.doc["notes"].append(text)

    def profile(self, metric: str, text: str) -> None:
        self.doc["profiles"][metric] = text

    def write(self, results_dir: Path = RESULTS) -> Path:
        self.doc["seconds"] = round(time.monotonic() - self._t0, 1)
        results_dir.mkdir(parents=True, exist_ok=True)
        path = results_dir / f"{self.doc['name']}.json"
        path.write_text(json.dumps(self.doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    def finish(self, results_dir: Path | None, *, quick: bool) -> None:
        """What a benchmark run on its own ends with: the JSON written, its checks and notes printed."""
        log(f"wrote {self.write(results_dir or (RESULTS / 'quick' if quick else RESULTS))}")
        print(json.dumps(self.doc["checks"], indent=2, ensure_ascii=False))
        for note in self.doc["notes"]:
            print("-", note)


# --------------------------------------------------------------------------- profiles


def profile_call(fn: Callable[[], object], *, top: int = 15) -> str:
    """Run ``fn`` under cProfile; return the top entries by cumulative time, as text."""
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    return profile_text(prof, top=top)


def profile_text(prof: cProfile.Profile, *, top: int = 15) -> str:
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    # Keep the header line and the table, not pstats' preamble.
    start = next((i for i, line in enumerate(lines) if "function calls" in line), 0)
    return "\n".join(line for line in lines[start:] if line.strip())


def log(message: str) -> None:
    """Progress for the person running the benchmarks (stderr, so JSON on stdout stays clean)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
