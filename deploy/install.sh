#!/usr/bin/env bash
# install.sh — install the door controller on a Raspberry Pi (Raspberry Pi OS / Debian, 64-bit).
#
# Run it as root from the repository checkout on the Pi. Safe to run again: it creates what is
# missing, puts modes and owners right, upgrades the package in the virtual environment and never
# overwrites /etc/accessctl/venue.toml once it exists. It enables the service but does not start
# it: edit the configuration, run `accessctl doctor`, then `systemctl start accessctl`.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/install.sh [options]

  --dry-run          print every action, do nothing
  --root DIR         install into the staging tree DIR instead of / : no packages, no user, no
                     systemctl; owners are not changed but listed in DIR/accessctl-ownership.txt
  --wheels DIR       install the Python packages offline from DIR (pip --no-index --find-links):
                     the Pi's LAN is isolated; make DIR with `pip download` on a connected machine
  --package PKG      also install this Debian package (e.g. libacsccid1 for an ACS reader); repeatable
  --no-apt           do not install Debian packages (e.g. offline: install them from the site's mirror first)
  --no-venv          leave the virtual environment as it is (configuration steps only)
  --python PY        interpreter for the virtual environment (default python3)
  --station-public-key FILE
                     install the station's public roster key (roster-signing.pub, from
                     `accessctl station roster keygen` on the station) as
                     /etc/accessctl/roster-signing.pub, 0640 root:accessctl
  --site-key FILE    install the site roster key (site-roster.key, 32 bytes, from the station) as
                     /etc/accessctl/site-roster.key, 0600 accessctl:accessctl (nobody else reads it)
  -h, --help         this text

What it does:
  Debian packages  python3-venv python3-dev gcc swig libpcsclite-dev pcscd chrony (+ python3-lgpio)
  user             accessctl (system user, no login), in the groups gpio and dialout
  /opt/accessctl/venv            the package, from this checkout (/usr/local/bin/accessctl links to it)
  /etc/accessctl/                0750 root:accessctl; venue.toml (0640) from config/venue.example.toml
  /etc/accessctl/tls/            0750 root:accessctl, for ca.crt, door.crt, door.key
  /etc/accessctl/roster-signing.pub, site-roster.key   when given (docs/commissioning.md §5);
                                 modes and owners put right on every run once they are there
  /var/lib/accessctl/            0700 accessctl:accessctl: database and device key
  /etc/systemd/system/accessctl.service   enabled, not started
It never installs vsmartcard-vpcd (the test set-up's virtual card reader: it listens on the
network) and warns when it finds it.
EOF
}

die() { echo "install.sh: $*" >&2; exit 2; }
say() { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }

SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="" DRY=false APT=true VENV_STEP=true PYTHON=python3 WHEELS="" STATION_PUB="" SITE_KEY=""
EXTRA_PACKAGES=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) DRY=true; shift ;;
        --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
        --wheels) WHEELS="${2:?--wheels needs a directory}"; shift 2 ;;
        --package) EXTRA_PACKAGES+=("${2:?--package needs a name}"); shift 2 ;;
        --no-apt) APT=false; shift ;;
        --no-venv) VENV_STEP=false; shift ;;
        --python) PYTHON="${2:?--python needs an interpreter}"; shift 2 ;;
        --station-public-key) STATION_PUB="${2:?--station-public-key needs a file}"; shift 2 ;;
        --site-key) SITE_KEY="${2:?--site-key needs a file}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

SERVICE_USER=accessctl
SERVICE_GROUPS=(gpio dialout)
PREFIX=/opt/accessctl
VENV=$PREFIX/venv
ETC=/etc/accessctl
STATE=/var/lib/accessctl
UNIT=/etc/systemd/system/accessctl.service
UDEV_RULE=/etc/udev/rules.d/60-accessctl-gpio.rules
POLKIT_RULE=/etc/polkit-1/rules.d/60-accessctl-pcscd.rules
LINK=/usr/local/bin/accessctl
STATION_PUB_PATH=$ETC/roster-signing.pub
SITE_KEY_PATH=$ETC/site-roster.key
SITE_KEY_SIZE=32
APT_PACKAGES=(python3-venv python3-dev gcc swig libpcsclite-dev pcscd chrony)

# Never the test set-up's virtual card reader on the door.
for pkg in "${EXTRA_PACKAGES[@]}"; do
    if [[ "$pkg" == vsmartcard* ]]; then
        die "refusing to install $pkg: vsmartcard's virtual reader listens on TCP 35963/35964 on every \
interface; it belongs to the development and test set-up, never to the door's Pi"
    fi
done

# The roster keys, checked before anything is changed: a door must never get the station's private key.
if [[ -n "$STATION_PUB" ]]; then
    [[ -f "$STATION_PUB" && -r "$STATION_PUB" ]] || die "--station-public-key $STATION_PUB: no such readable file"
    if grep -q -- "PRIVATE KEY" "$STATION_PUB"; then
        die "--station-public-key $STATION_PUB is a PRIVATE key: the station's signing key never leaves the \
station. Give its public half, roster-signing.pub (accessctl station roster keygen makes both)"
    fi
    [[ "$(head -n 1 "$STATION_PUB")" == "-----BEGIN PUBLIC KEY-----" ]] \
        || die "--station-public-key $STATION_PUB is not a PEM public key (-----BEGIN PUBLIC KEY-----): copy \
roster-signing.pub from the station"
fi
if [[ -n "$SITE_KEY" ]]; then
    [[ -f "$SITE_KEY" && -r "$SITE_KEY" ]] || die "--site-key $SITE_KEY: no such readable file"
    size=$(wc -c < "$SITE_KEY")
    [[ "$size" -eq $SITE_KEY_SIZE ]] || die "--site-key $SITE_KEY is $size bytes, not $SITE_KEY_SIZE: copy the \
site's site-roster.key from the station; never make a new one for one door"
fi

if [[ -n "$ROOT" ]]; then
    $DRY || mkdir -p "$ROOT"
    [[ -d "$ROOT" ]] || $DRY || die "--root $ROOT is not a directory"
    ROOT="$(cd "$ROOT" 2>/dev/null && pwd || echo "$ROOT")"
    [[ "$ROOT" != / ]] || ROOT=""
fi
STAGING=false; [[ -n "$ROOT" ]] && STAGING=true
if ! $STAGING && ! $DRY && [[ $(id -u) -ne 0 ]]; then
    die "run as root (or try --dry-run, or --root DIR for a staging tree)"
fi
for f in pyproject.toml config/venue.example.toml deploy/accessctl.service; do
    [[ -f "$SOURCE/$f" ]] || die "$SOURCE/$f is missing: run this script from the repository checkout"
done

r() { printf '%s%s' "$ROOT" "$1"; }   # a system path inside the target tree

act() {                                # print an action, then do it (unless --dry-run)
    local line
    printf -v line '%q ' "$@"
    if $DRY; then printf '  [dry-run] %s\n' "${line% }"; else printf '  + %s\n' "${line% }"; "$@"; fi
}

OWNERSHIP=()
own() {                                # own OWNER GROUP MODE PATH
    local owner=$1 group=$2 mode=$3 path=$4
    act chmod "$mode" "$(r "$path")"
    if $STAGING; then
        OWNERSHIP+=("$mode $owner:$group $path")
    else
        act chown "$owner:$group" "$path"
    fi
}

install_file() {                       # install_file MODE SOURCE PATH: copy when different
    local mode=$1 src=$2 dest; dest="$(r "$3")"
    if [[ -f "$dest" ]] && cmp -s "$src" "$dest"; then
        echo "  $3 is up to date"
    else
        act install -D -m "$mode" "$src" "$dest"
    fi
}

# ------------------------------------------------------------------ a virtual card reader left behind?
vpcd_found=""
for f in "$(r /etc/reader.conf.d/vpcd)" "$(r /usr/lib/pcsc/drivers/serial)"/libifdvpcd.so* \
         "$(r /usr/lib)"/*/pcsc/drivers/serial/libifdvpcd.so*; do
    [[ -e "$f" ]] && vpcd_found="$f" && break
done
if [[ -z "$vpcd_found" ]] && ! $STAGING && command -v dpkg-query >/dev/null \
        && dpkg-query -W -f='${Status}' vsmartcard-vpcd 2>/dev/null | grep -q "install ok installed"; then
    vpcd_found="package vsmartcard-vpcd"
fi
if [[ -n "$vpcd_found" ]]; then
    warn "vsmartcard-vpcd is present ($vpcd_found). Its virtual reader listens on TCP 35963/35964 on every"
    warn "interface, so anyone on the LAN could present a card. Remove it:  apt-get purge vsmartcard-vpcd"
fi

# ------------------------------------------------------------------ Debian packages
say "Debian packages"
if $STAGING; then
    echo "  skipped (staging tree)"
elif ! $APT; then
    echo "  skipped (--no-apt)"
else
    wanted=("${APT_PACKAGES[@]}" "${EXTRA_PACKAGES[@]}")
    # Raspberry Pi OS has lgpio (gpiozero's pin library for /dev/gpiochip*) as a Debian package;
    # the virtual environment sees it through --system-site-packages.
    if apt-cache show python3-lgpio >/dev/null 2>&1; then wanted+=(python3-lgpio); fi
    missing=()
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        act apt-get update -qq
        act env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    else
        echo "  all installed"
    fi
fi

# ------------------------------------------------------------------ user and groups
say "service user $SERVICE_USER in groups ${SERVICE_GROUPS[*]}"
if $STAGING; then
    echo "  skipped (staging tree): recorded in accessctl-ownership.txt"
    OWNERSHIP+=("user $SERVICE_USER system, home $STATE, shell /usr/sbin/nologin, groups $(IFS=,; echo "${SERVICE_GROUPS[*]}")")
else
    for g in "${SERVICE_GROUPS[@]}"; do
        getent group "$g" >/dev/null || act groupadd --system "$g"
    done
    if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
        act useradd --system --user-group --home-dir "$STATE" --no-create-home \
            --shell /usr/sbin/nologin --comment "Venue access controller" "$SERVICE_USER"
    fi
    act usermod --append --groups "$(IFS=,; echo "${SERVICE_GROUPS[*]}")" "$SERVICE_USER"
fi

# ------------------------------------------------------------------ virtual environment
say "virtual environment $VENV"
if ! $VENV_STEP; then
    echo "  skipped (--no-venv)"
else
    if [[ ! -x "$(r "$VENV")/bin/python" ]]; then
        act "$PYTHON" -m venv --system-site-packages "$(r "$VENV")"
    fi
    pip_args=(--quiet --disable-pip-version-check)
    [[ -n "$WHEELS" ]] && pip_args+=(--no-index --find-links "$WHEELS")
    act "$(r "$VENV")/bin/python" -m pip install "${pip_args[@]}" --upgrade "$SOURCE"
fi
if [[ ! -L "$(r "$LINK")" || "$(readlink "$(r "$LINK")")" != "$VENV/bin/accessctl" ]]; then
    act mkdir -p "$(r "$(dirname "$LINK")")"
    act ln -sfn "$VENV/bin/accessctl" "$(r "$LINK")"
fi
for doc in docs/commissioning.md:commissioning.md deploy/pi/README.md:raspberry-pi.md; do
    if [[ -f "$SOURCE/${doc%%:*}" ]]; then install_file 0644 "$SOURCE/${doc%%:*}" "$PREFIX/docs/${doc##*:}"; fi
done

# ------------------------------------------------------------------ configuration and state
say "configuration $ETC and state $STATE"
act mkdir -p "$(r "$ETC")" "$(r "$ETC/tls")" "$(r "$STATE")"
own root "$SERVICE_USER" 0750 "$ETC"
own root "$SERVICE_USER" 0750 "$ETC/tls"
if [[ -e "$(r "$ETC/venue.toml")" ]]; then
    echo "  $ETC/venue.toml exists: kept as it is"
else
    act install -m 0640 "$SOURCE/config/venue.example.toml" "$(r "$ETC/venue.toml")"
fi
own root "$SERVICE_USER" 0640 "$ETC/venue.toml"
own "$SERVICE_USER" "$SERVICE_USER" 0700 "$STATE"

# ------------------------------------------------------------------ roster keys from the station
say "roster keys"
# The public key: the service reads it, nobody but root changes it. The site roster key: the
# service must read it and refuses it when anyone else may (group or others), so it is the service
# user's own, 0600, in a directory only root and the service's group can enter.
if [[ -n "$STATION_PUB" ]]; then install_file 0640 "$STATION_PUB" "$STATION_PUB_PATH"; fi
if [[ -e "$(r "$STATION_PUB_PATH")" ]]; then own root "$SERVICE_USER" 0640 "$STATION_PUB_PATH"; fi
if [[ -n "$SITE_KEY" ]]; then install_file 0600 "$SITE_KEY" "$SITE_KEY_PATH"; fi
if [[ -e "$(r "$SITE_KEY_PATH")" ]]; then own "$SERVICE_USER" "$SERVICE_USER" 0600 "$SITE_KEY_PATH"; fi
if [[ -z "$STATION_PUB$SITE_KEY" && ! -e "$(r "$STATION_PUB_PATH")" && ! -e "$(r "$SITE_KEY_PATH")" ]]; then
    echo "  none given (a door whose station publishes the roster: --station-public-key and --site-key)"
fi
ROSTER_NEXT=""
if [[ -e "$(r "$STATION_PUB_PATH")" || -e "$(r "$SITE_KEY_PATH")" || -n "$STATION_PUB$SITE_KEY" ]] \
        && ! grep -qE '^[[:space:]]*station_public_key[[:space:]]*=' "$(r "$ETC/venue.toml")" 2>/dev/null; then
    ROSTER_NEXT="
     The roster keys are in $ETC: name them in venue.toml (then the door takes the station's
     signed roster and runs only commands the station signed for it):
       [roster]
       station_public_key = \"$STATION_PUB_PATH\"
       site_key = \"$SITE_KEY_PATH\""
fi

# ------------------------------------------------------------------ service, device and PC/SC access
say "systemd service, udev and polkit rules"
install_file 0644 "$SOURCE/deploy/accessctl.service" "$UNIT"
install_file 0644 "$SOURCE/deploy/pi/60-accessctl-gpio.rules" "$UDEV_RULE"
if [[ -d "$(r /etc/polkit-1)" ]]; then   # pcscd built with polkit (Debian 13 on) checks every client
    install_file 0644 "$SOURCE/deploy/pi/60-accessctl-pcscd.rules" "$POLKIT_RULE"
fi
if $STAGING; then
    echo "  systemctl skipped (staging tree)"
else
    if [[ -d /run/systemd/system ]]; then   # not when building an image in a chroot
        act systemctl daemon-reload
        act udevadm control --reload
        act udevadm trigger --subsystem-match=gpio
    fi
    act systemctl enable pcscd.socket chrony.service
    act systemctl enable accessctl.service
fi

if $STAGING && ! $DRY; then
    printf '%s\n' "# intended modes and owners of the staging tree (install.sh --root)" "${OWNERSHIP[@]}" \
        > "$ROOT/accessctl-ownership.txt"
fi

say "done"
$DRY && echo "  (dry run: nothing was changed)"
cat <<EOF

Next:
  1. Edit $ETC/venue.toml (site, door, pins, readers, broker); check it:
       accessctl config check --config $ETC/venue.toml$ROSTER_NEXT
  2. Put the broker's files in $ETC/tls/ (ca.crt, door.crt, and door.key owned by $SERVICE_USER,
     mode 0600) and the MQTT password in $ETC/mqtt.password (0640 root:$SERVICE_USER).
  3. Apply deploy/pi/config.txt.snippet (no Wi-Fi, no Bluetooth, the RTC) and chrony: deploy/pi/README.md.
  4. sudo -u $SERVICE_USER accessctl doctor --config $ETC/venue.toml
  5. systemctl start accessctl; then walk docs/commissioning.md at the door.
EOF
