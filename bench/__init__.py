"""Benchmarks of the door controller against bare baselines measured in the same run.

`python -m bench` (or scripts/bench.sh) runs them; docs/performance.md has the figures.
Modules: :mod:`bench.decision` (credential → lock release), :mod:`bench.backlog`
(MQTT backlog flush), :mod:`bench.storage` (log verify, roster import),
:mod:`bench.memory` (resident memory, start-up); :mod:`bench.data` makes the
synthetic rosters and event logs, :mod:`bench.report` the table.
"""
