"""One tree's side of ``python -m bench decision --against COMMIT`` (see :mod:`bench.against`).

    python bench/against_worker.py TREE

Run as a script, never imported: it puts ``TREE`` (this repository, or the older commit's
temporary worktree) first on ``sys.path``, so the controller, the drivers, the simulator and
the benchmark's own door driver (``bench.decision.DoorBench`` and ``bench.data.Workspace``)
all come from that tree. What is timed and where is the same in every tree that has them:
the credential's handling from its start (decision), and the walk-through's handling from
its start to the real lock driver's pin reading released (grant).

The cycle itself is this file's, the same for both trees: person ``i`` presents a credential
outside, walks through, opens and closes the door, three seconds pass on the simulated clock,
and the same inside. Each grant's idle wait (how long the loop blocked on its input queue
before the walk-through arrived) is measured here too, by timing the queue's ``get``.

Requests, one JSON object per line on standard input, each answered by one line on the
original standard output (anything the tree prints goes to standard error):
``{"op": "open", "persons": N, "workdir": DIR, "warmup": N, "id_card_every": N}``,
``{"op": "cycle", "n": N}``, ``{"op": "close"}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path


class Side:
    """The tree's simulated door, driven one in-and-out cycle at a time."""

    def __init__(self, persons: int, workdir: str, *, warmup: int, id_card_every: int):
        from bench import decision
        from bench.data import Workspace

        self.id_card_every = id_card_every
        self.passage_type = decision.GatePassage
        cfg = Workspace(Path(workdir)).roster_db(persons, f"decision-{persons}")
        self.bench = decision.DoorBench(cfg, persons=persons)
        self.bench.__enter__()
        self.waits: list[float] = []
        self._time_the_queue()
        for c in range(warmup):
            self.cycle(c)

    def _time_the_queue(self) -> None:
        queue = self.bench.door.inputs
        get = queue.get

        def timed_get(*args, **kwargs):
            t0 = time.perf_counter()
            item = get(*args, **kwargs)
            if isinstance(item, self.passage_type):
                self.waits.append(time.perf_counter() - t0)
            return item

        queue.get = timed_get

    def cycle(self, n: int) -> dict:
        bench = self.bench
        i = bench.rng.randrange(bench.persons)
        decision, grant, release = [], [], []
        self.waits.clear()
        for side in ("outside", "inside"):
            by_id_card = n % self.id_card_every == 0 and side == "outside"
            decided = bench._present(i, side, by_id_card)
            granted, _handled = bench._walk_through()
            bench.door.open_door()
            bench.door.close_door()
            bench.door.advance(timedelta(seconds=3))
            decision.append(decided)
            grant.append(granted)
            release.append(decided + granted)
        return {"decision": decision, "grant": grant, "release": release, "waits": list(self.waits)}

    def close(self) -> None:
        self.bench.__exit__(None, None, None)


def main(tree: str) -> int:
    answers = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [tree] + [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    side = None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "open":
                side = Side(request["persons"], request["workdir"], warmup=request["warmup"],
                            id_card_every=request["id_card_every"])
                import firmware_py

                answer = {"ok": True, "firmware": os.path.dirname(os.path.abspath(firmware_py.__file__))}
            elif request["op"] == "cycle":
                answer = {"ok": True, **side.cycle(request["n"])}
            else:
                if side is not None:
                    side.close()
                answers.write(json.dumps({"ok": True}) + "\n")
                return 0
        except Exception:
            answer = {"ok": False, "error": traceback.format_exc()}
        answers.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
