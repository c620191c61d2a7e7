#!/usr/bin/env bash
# Set up a development machine (Debian, as root) and run the demo or the tests.
#
#   scripts/dev.sh demo    install what is needed, then play a morning at the simulated door through a
#                          lab broker into the supervision station's page (Ctrl-C stops; options after
#                          "demo" go to accessctl-sim demo, e.g. --exit-after-morning)
#   scripts/dev.sh test    install what is needed, then run the whole test suite
#
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

job="${1:-}"
case "$job" in
  demo|test) ;;
  *) echo "usage: scripts/dev.sh demo|test" >&2; exit 2 ;;
esac

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Debian packages: the broker, the PC/SC stack with its virtual reader (tests only:
# vpcd listens on the network and must never go on the production Pi), what pyscard
# needs to build, systemd-analyze for checking the unit file, Chromium with a CJK font
# for the station's browser tests (Playwright drives it; no browser is downloaded), and
# the fleet tier (RabbitMQ cluster, PostgreSQL archive) that the system tests start on loopback.
APT_PACKAGES=(python3 python3-venv python3-dev gcc swig libpcsclite-dev pcscd vsmartcard-vpcd
              mosquitto mosquitto-clients openssl systemd chromium fonts-wqy-microhei
              rabbitmq-server postgresql-15)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/dev.sh: these Debian packages are missing: ${missing[*]}; run as root or install them first" >&2
    exit 2
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A virtual environment with the project; reinstalled only when pyproject.toml changes.
PYTHON="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  say "creating the virtual environment .venv"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  say "installing the project and its test tools into .venv (pyscard builds from source)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.installed-* && touch "$stamp"
fi

case "$job" in
  demo)
    say "playing a morning at the door, watched from the supervision station"
    exec .venv/bin/accessctl-sim demo "${@:2}"
    ;;
  test)
    say "checking the code with ruff (lint and import order)"
    .venv/bin/ruff check .
    say "running the test suite"
    exec .venv/bin/python -m pytest
    ;;
esac
