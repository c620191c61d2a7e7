"""Credential → release of an older commit beside this tree, in one run: ``python -m bench decision --against COMMIT``.

A regression shows when it happens only if the old code is measured on the same machine, in
the same minutes, under the same load as the new; figures from another day on a shared
machine compare the machines. So the older commit is checked out into a temporary git
worktree (``git worktree add --detach``; removed afterwards) and both trees run at once, each
in a worker process of its own (:mod:`bench.against_worker`, with its tree first on
``sys.path``): the same cycle of the decision benchmark (a credential outside, the walk-through,
the door opened and closed, the same inside; every fourth entry by resident ID card), the
door driven and timed by each tree's own ``bench.decision.DoorBench``, on a roster each tree
imports with its own code.

The runs are interleaved one in-and-out cycle at a time, which tree goes first alternating.
After each cycle this process sleeps as long as each of its grants waited idle for the
walk-through and then makes one bare durable append (:class:`~bench.decision.BareAppender`:
WAL, ``synchronous=FULL``, one row per transaction, on the same disk): the baseline after the
same idle wait, the state a grant starts from, taken the same way for both trees.

Targets (issue 18): this tree's p50 within 1.1× the older commit's measured in the same run;
this tree's p99 at most 2.5× the p99 of the bare append after the same idle wait.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, Result, _loadavg, check, log, summary_ms
from .decision import ID_CARD_EVERY, WARMUP_CYCLES, BareAppender

P50_RATIO = 1.1  # issue 18: p50 within 1.1x of the older commit's, same run
P99_RATIO = 2.5  # issue 18: p99 at most 2.5x the bare append after the same idle wait
WORKER = Path(__file__).with_name("against_worker.py")
ANSWER_TIMEOUT_S = 600.0  # a 100,000-person roster is imported when a side opens


class AgainstError(RuntimeError):
    """The older commit cannot be checked out, or one side of the comparison failed."""


def resolve(commit: str) -> str:
    """The full hash of ``commit`` in this repository; :class:`AgainstError` naming it when there is none."""
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise AgainstError(f"--against {commit}: no such commit in {REPO}")
    return out.stdout.strip()


class OlderTree:
    """``commit`` checked out into a temporary worktree of this repository, removed on exit."""

    def __init__(self, commit: str, parent: Path):
        self.commit = resolve(commit)
        self.path = Path(tempfile.mkdtemp(prefix=f"tree-{self.commit[:7]}-", dir=parent))

    def __enter__(self) -> OlderTree:
        out = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(self.path),
                              self.commit], capture_output=True, text=True)
        if out.returncode != 0:
            raise AgainstError(f"cannot check out {self.commit[:7]} into {self.path}: {out.stderr.strip()}")
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(self.path)],
                       capture_output=True, text=True)
        shutil.rmtree(self.path, ignore_errors=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], capture_output=True, text=True)


class Worker:
    """One tree's side: a worker process answering one JSON line per request."""

    def __init__(self, label: str, tree: Path):
        self.label = label
        self.tree = tree
        self.proc = subprocess.Popen([sys.executable, str(WORKER), str(tree)], cwd=tree, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env={**os.environ, "PYTHONPATH": str(tree)})

    def ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AgainstError(f"{self.label}: the worker ended (exit {self.proc.wait(timeout=10)}); "
                               "its error is on standard error above")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise AgainstError(f"{self.label}: {answer.get('error')}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask({"op": "close"})
                self.proc.wait(timeout=30)
            except (AgainstError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


class Samples:
    def __init__(self):
        self.release: list[float] = []
        self.decision: list[float] = []
        self.grant: list[float] = []
        self.after_idle: list[float] = []  # the parent's bare append after each grant's idle wait
        self.waits: list[float] = []


def compare(persons: int, *, commit: str, older: Path, workdir: Path, cycles: int) -> dict:
    """Both trees on a roster of ``persons``, interleaved cycle by cycle; the figures of each."""
    sides = {"this tree": Worker("this tree", REPO), commit: Worker(commit, older)}
    samples = {label: Samples() for label in sides}
    baseline = BareAppender(workdir)
    try:
        for label, worker in sides.items():
            log(f"decision --against: {label}: importing {persons:,} persons and warming up")
            (workdir / label.replace(" ", "-")).mkdir(exist_ok=True)
            opened = worker.ask({"op": "open", "persons": persons, "workdir": str(workdir / label.replace(" ", "-")),
                                 "warmup": WARMUP_CYCLES, "id_card_every": ID_CARD_EVERY})
            if Path(opened["firmware"]).resolve() != (worker.tree / "firmware_py").resolve():
                raise AgainstError(f"{label}: the worker loaded {opened['firmware']}, not {worker.tree}/firmware_py")
        for _ in range(WARMUP_CYCLES):
            baseline.append(record=False)
        order = list(sides)
        log(f"decision --against: {persons:,} persons: {cycles} cycles in each tree, interleaved")
        for n in range(cycles):
            for label in order if n % 2 == 0 else order[::-1]:
                answer = sides[label].ask({"op": "cycle", "n": n})
                s = samples[label]
                s.release += answer["release"]
                s.decision += answer["decision"]
                s.grant += answer["grant"]
                s.waits += answer["waits"]
                for wait in answer["waits"]:
                    time.sleep(wait)  # as idle as that tree's loop was before its grant
                    baseline.append(record=False)
                    s.after_idle.append(baseline.last_s)
    finally:
        baseline.close()
        for worker in sides.values():
            worker.close()
    return {"persons": persons, "sides": {
        label: {"release": summary_ms(s.release), "decision": summary_ms(s.decision), "grant": summary_ms(s.grant),
                "baseline_after_idle": summary_ms(s.after_idle), "idle_wait": summary_ms(s.waits)}
        for label, s in samples.items()}}


def run(ws, *, commit: str, quick: bool, rosters: tuple[int, ...] | None = None,
        cycles: int | None = None) -> Result:
    rosters = rosters or ((100, 1_000) if quick else (100, 10_000, 100_000))
    cycles = cycles or (20 if quick else 100)
    result = Result("decision_against", f"Credential → release, this tree beside {commit} in the same run",
                    data_dir=ws.root, quick=quick,
                    params={"against": commit, "rosters": list(rosters), "cycles": cycles,
                            "samples_per_case": 2 * cycles, "warmup_cycles": WARMUP_CYCLES,
                            "id_card_every": ID_CARD_EVERY})
    with OlderTree(commit, ws.root) as older:
        result.detail("against_commit", older.commit)
        cases = []
        for persons in rosters:
            workdir = ws.root / f"against-{persons}"
            workdir.mkdir(parents=True, exist_ok=True)
            case = compare(persons, commit=commit, older=older.path, workdir=workdir, cycles=cycles)
            cases.append(case)
            new, old = case["sides"]["this tree"], case["sides"][commit]
            label = f"{persons:,} persons"
            p50, old50 = new["release"]["p50_ms"], old["release"]["p50_ms"]
            result.add(check(f"credential → release p50, {label}, this tree vs {commit}", unit="ms", product=p50,
                             baseline=old50, target=f"≤ {P50_RATIO:g}× {commit}'s (same run)",
                             met=p50 <= P50_RATIO * old50))
            p99, base99 = new["release"]["p99_ms"], new["baseline_after_idle"]["p99_ms"]
            result.add(check(f"credential → release p99, {label}, vs the bare append after the same idle wait",
                             unit="ms", product=p99, baseline=base99,
                             target=f"≤ {P99_RATIO:g}× the bare append after the same idle wait",
                             met=p99 <= P99_RATIO * base99))
    result.detail("cases", cases)
    result.detail("load_after", _loadavg())
    result.note(f"Both trees ran at once, each in its own worker process, one in-and-out cycle at a time, "
                f"alternating which went first; {commit} was checked out into a temporary git worktree. "
                "Each tree imported its roster with its own code and was timed by its own DoorBench "
                "(the same timing points); the cycle was the same for both.")
    result.note("The baseline is a bare durable SQLite append (WAL, synchronous=FULL, one row per transaction) "
                "made by the parent after sleeping as long as each grant waited idle for its walk-through: "
                "the state a grant starts from, the same for both trees.")
    return result


def table(doc: dict) -> str:
    """The side-by-side figures as a Markdown table (p50 / p99, ms)."""
    commit = doc["params"]["against"]
    lines = [f"| roster | this tree: credential → release | {commit}: credential → release | "
             f"bare append after the same idle wait (this tree's / {commit}'s waits) | idle wait, p50 |",
             "|---|---|---|---|---|"]
    for case in doc["details"]["cases"]:
        new, old = case["sides"]["this tree"], case["sides"][commit]

        def pair(s: dict) -> str:
            return f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}"

        lines.append(f"| {case['persons']:,} | {pair(new['release'])} | {pair(old['release'])} | "
                     f"{pair(new['baseline_after_idle'])} / {pair(old['baseline_after_idle'])} | "
                     f"{new['idle_wait']['p50_ms']:.1f} ms |")
    return "\n".join(lines)
