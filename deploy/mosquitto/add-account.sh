#!/usr/bin/env bash
# add-account.sh — add (or change the password of) a door or supervisor account on the venue broker.
#
# Sets the password in Mosquitto's password file with "mosquitto_passwd -b" and, if the ACL file
# has no block for the account yet, appends one (doors: their own topics only; supervisors: read
# everything, write commands and the time beacon). Run it on the broker machine, then reload
# the broker. Never prompts when the password comes from --generate, $MQTT_PASSWORD or a pipe.
#
# Note: mosquitto_passwd -b takes the password on its command line, so it is visible in the
# process list of the broker machine for a moment; run this on the broker box, not a shared host.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: add-account.sh [options] door SITE DOOR      username door-SITE-DOOR
       add-account.sh [options] supervisor NAME     username NAME

The password is taken from, in order: --generate (a new random one), the MQTT_PASSWORD
environment variable, the first line of standard input when it is not a terminal, or a prompt.

  --passwd FILE        Mosquitto password file (default /etc/mosquitto/passwd; created if missing)
  --acl FILE           ACL file to append the account's block to (default /etc/mosquitto/acl)
  --no-acl             do not touch the ACL file
  --prefix PREFIX      topic prefix (default accessctl; must match the controllers' [mqtt] prefix)
  --generate           make a random password
  --password-out FILE  also write the password to FILE (mode 0600), e.g. for the door's
                       /etc/accessctl/mqtt.password; with --generate and no --password-out the
                       password is printed once on standard output
  -h, --help           this text

Examples:
  ./add-account.sh --generate --password-out scan-room.password door hn-archive-1 scan-room
  MQTT_PASSWORD='...' ./add-account.sh supervisor supervisor
  systemctl reload mosquitto
EOF
}

die() { echo "add-account.sh: $*" >&2; exit 2; }

passwd_file=/etc/mosquitto/passwd acl_file=/etc/mosquitto/acl prefix=accessctl
use_acl=1 generate=0 password_out=""
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --passwd) passwd_file="${2:?--passwd needs a file}"; shift 2 ;;
        --acl) acl_file="${2:?--acl needs a file}"; shift 2 ;;
        --no-acl) use_acl=0; shift ;;
        --prefix) prefix="${2:?--prefix needs a value}"; shift 2 ;;
        --generate) generate=1; shift ;;
        --password-out) password_out="${2:?--password-out needs a file}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option: $1" ;;
        *) args+=("$1"); shift ;;
    esac
done

name_re='^[a-z0-9_-]+$'
[[ -n "$prefix" && "$prefix" != */ && "$prefix" != /* && "$prefix" != *[+#\ ]* ]] \
    || die "prefix '$prefix' may not contain + # or spaces nor start or end with /"
case "${args[0]:-}" in
    door)
        [[ ${#args[@]} -eq 3 ]] || { usage >&2; die "door needs SITE and DOOR"; }
        site="${args[1]}" door="${args[2]}"
        [[ "$site" =~ $name_re ]] || die "site '$site': use lower-case letters, digits, - and _"
        [[ "$door" =~ $name_re ]] || die "door '$door': use lower-case letters, digits, - and _"
        username="door-$site-$door"
        block="user $username
topic write $prefix/$site/$door/events/#
topic write $prefix/$site/$door/status
topic write $prefix/$site/$door/occupancy
topic write $prefix/$site/$door/cmd/result
topic read $prefix/$site/$door/cmd
topic read $prefix/$site/time"
        ;;
    supervisor)
        [[ ${#args[@]} -eq 2 ]] || { usage >&2; die "supervisor needs NAME"; }
        username="${args[1]}"
        [[ "$username" =~ ^[A-Za-z0-9_.-]+$ && "$username" != door-* ]] \
            || die "supervisor name '$username': letters, digits, . - _ and not starting with door-"
        block="user $username
topic read $prefix/#
topic write $prefix/+/+/cmd
topic write $prefix/+/time"
        ;;
    *) usage >&2; die "say 'door SITE DOOR' or 'supervisor NAME'" ;;
esac

command -v mosquitto_passwd >/dev/null || die "mosquitto_passwd not found (apt-get install mosquitto)"

if [[ $generate -eq 1 ]]; then
    password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 24)"
elif [[ -n "${MQTT_PASSWORD:-}" ]]; then
    password="$MQTT_PASSWORD"
elif [[ ! -t 0 ]]; then
    IFS= read -r password || true
else
    IFS= read -r -s -p "Password for $username: " password; echo >&2
    IFS= read -r -s -p "Again: " again; echo >&2
    [[ "$password" == "$again" ]] || die "the two passwords differ"
fi
[[ ${#password} -ge 12 ]] || die "the password must have at least 12 characters"
[[ "$password" != *:* ]] || die "the password may not contain ':'"

umask 077
if [[ ! -e "$passwd_file" ]]; then
    : >"$passwd_file"
    echo "created $passwd_file (mode 0600; the broker's user must be able to read it)"
fi
mosquitto_passwd -b "$passwd_file" "$username" "$password"
echo "password set for $username in $passwd_file"

if [[ -n "$password_out" ]]; then
    printf '%s\n' "$password" >"$password_out"
    chmod 0600 "$password_out"
    echo "password written to $password_out"
elif [[ $generate -eq 1 ]]; then
    echo "password for $username: $password"
fi

if [[ $use_acl -eq 1 ]]; then
    if [[ -e "$acl_file" ]] && grep -qx "user $username" "$acl_file"; then
        echo "$acl_file already has a block for $username (left as it is)"
    else
        printf '\n%s\n' "$block" >>"$acl_file"
        echo "added ACL block for $username to $acl_file"
    fi
fi
echo "reload the broker to apply: systemctl reload mosquitto"
