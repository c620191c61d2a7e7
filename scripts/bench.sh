#!/usr/bin/env bash
# Run the benchmarks and regenerate the figures in docs/performance.md.
#
#   scripts/bench.sh                  every benchmark, full sizes (a few minutes on 2 cores)
#   scripts/bench.sh --quick          small sizes, a fast pass (results in bench/results/quick/, docs untouched)
#   scripts/bench.sh decision memory  only these (decision, memory, storage, backlog)
#   scripts/bench.sh --workdir /var/lib/accessctl/bench   put the databases on the disk to be measured
#
# Needs the development set-up that `scripts/dev.sh test` makes (Debian packages incl. mosquitto
# and mosquitto-clients, and .venv with the project and its test tools); run that once first.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { echo "scripts/bench.sh: $1; run scripts/dev.sh test once (it installs everything), then try again" >&2; exit 2; }

[[ -x .venv/bin/python ]] || need "there is no .venv"
.venv/bin/python -c "import firmware_py, gpiozero, paho.mqtt, pytest" 2>/dev/null || need ".venv lacks the project or its test tools"
for program in mosquitto mosquitto_sub openssl stdbuf; do
  command -v "$program" >/dev/null || [[ -x "/usr/sbin/$program" ]] || need "$program is not installed"
done

exec .venv/bin/python -m bench "$@"
