#!/usr/bin/env bash
# add-account.sh — give a door or supervisor account its block in the venue broker's ACL.
#
# The login itself is the account's client certificate (make-certs.sh): the broker takes the
# MQTT username from the certificate's CN (use_identity_as_username) and the client id from
# the username (use_username_as_clientid). There are no broker passwords. This script appends
# what the account may publish and read (doors: their own topics only; supervisors: read
# everything, write commands and the time beacon). Run it on the broker machine, then reload
# the broker.
#
# Door accounts are door.SITE.DOOR: site and door names never contain ".", so two doors can
# never share an account (door-SITE-DOOR could: hn-archive/1-scan-room = hn-archive-1/scan-room).
# An account that already has a block is never changed: the same block again is a no-op, a
# different one is refused (exit 1) so that no account's rights are replaced silently.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: add-account.sh [options] door SITE DOOR      username door.SITE.DOOR
       add-account.sh [options] supervisor NAME     username NAME

  --acl FILE           ACL file to append the account's block to (default /etc/mosquitto/acl)
  --prefix PREFIX      topic prefix (default accessctl; must match the controllers' [mqtt] prefix)
  -h, --help           this text

The account's certificate comes from make-certs.sh (--door DOOR / --supervisor NAME); its CN
is the username. Every supervisor tool (monitor, station, command line) needs an account of its
own: two connections with one certificate replace each other.

Examples:
  ./add-account.sh door hn-archive-1 scan-room
  ./add-account.sh supervisor monitor-desk1
  systemctl reload mosquitto
EOF
}

die() { echo "add-account.sh: $*" >&2; exit 2; }

acl_file=/etc/mosquitto/acl prefix=accessctl
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --acl) acl_file="${2:?--acl needs a file}"; shift 2 ;;
        --prefix) prefix="${2:?--prefix needs a value}"; shift 2 ;;
        --passwd|--generate|--password-out|--no-acl)
            die "$1: the broker no longer uses passwords; the client certificate (make-certs.sh) is the login" ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option: $1" ;;
        *) args+=("$1"); shift ;;
    esac
done

name_re='^[a-z0-9][a-z0-9_-]{0,62}$'  # firmware_py/config/schema.py's site and door names: never a "."
[[ -n "$prefix" && "$prefix" != */ && "$prefix" != /* && "$prefix" != *[+#\ ]* ]] \
    || die "prefix '$prefix' may not contain + # or spaces nor start or end with /"
case "${args[0]:-}" in
    door)
        [[ ${#args[@]} -eq 3 ]] || { usage >&2; die "door needs SITE and DOOR"; }
        site="${args[1]}" door="${args[2]}"
        [[ "$site" =~ $name_re ]] || die "site '$site': use lower-case letters, digits, - and _ (at most 63)"
        [[ "$door" =~ $name_re ]] || die "door '$door': use lower-case letters, digits, - and _ (at most 63)"
        username="door.$site.$door"
        [[ ${#username} -le 64 ]] \
            || die "account $username has ${#username} characters, a certificate CN holds 64: shorten the site or door name"
        block="user $username
topic write $prefix/$site/$door/events/access/+
topic write $prefix/$site/$door/events/alarm/+
topic write $prefix/$site/$door/events/system/+
topic write $prefix/$site/$door/status
topic write $prefix/$site/$door/occupancy
topic write $prefix/$site/$door/cmd/result
topic read $prefix/$site/$door/cmd
topic read $prefix/$site/time
topic read $prefix/$site/roster
topic read $prefix/$site/roster/chunks/+"
        ;;
    supervisor)
        [[ ${#args[@]} -eq 2 ]] || { usage >&2; die "supervisor needs NAME"; }
        username="${args[1]}"
        [[ "$username" =~ ^[A-Za-z0-9_-]{1,64}$ ]] \
            || die "supervisor name '$username': letters, digits, - and _ (at most 64; no '.', which only door accounts have)"
        block="user $username
topic read $prefix/#
topic write $prefix/+/+/cmd
topic write $prefix/+/time
topic write $prefix/+/roster
topic write $prefix/+/roster/chunks/+"
        ;;
    *) usage >&2; die "say 'door SITE DOOR' or 'supervisor NAME'" ;;
esac

# existing_block: the lines of the account's block in the ACL file (from its "user" line to the
# next blank, comment or "user" line), or nothing.
existing_block() {
    [[ -e "$acl_file" ]] || return 0
    awk -v want="user $username" '
        $0 == want { inside = 1; print; next }
        inside && (/^[[:space:]]*$/ || /^[[:space:]]*#/ || /^user /) { inside = 0 }
        inside { print }
    ' "$acl_file"
}

have="$(existing_block)"
if [[ -n "$have" ]]; then
    if [[ "$have" == "$block" ]]; then
        echo "$acl_file already has this block for $username (unchanged)"
        exit 0
    fi
    echo "add-account.sh: $acl_file already has a different block for $username; refusing to change" \
         "an existing account's rights. Edit the file by hand if that is what you mean. It has:" >&2
    printf '%s\n' "$have" >&2
    exit 1
fi
umask 027
printf '\n%s\n' "$block" >>"$acl_file"
echo "added ACL block for $username to $acl_file"
echo "reload the broker to apply: systemctl reload mosquitto"
