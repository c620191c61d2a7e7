#!/usr/bin/env bash
# add-door.sh — create (or update) a door's or a station's account on the RabbitMQ cluster.
#
# The RabbitMQ counterpart of deploy/mosquitto/add-account.sh and its ACL: a door may publish
# only under its own topics and read only its own commands, its site's time beacon and roster.
# RabbitMQ checks MQTT topics as routing keys on the amq.topic exchange, where the MQTT level
# separator '/' becomes '.', so accessctl/SITE/DOOR/status is checked as accessctl.SITE.DOOR.status.
# Users and permissions are cluster-wide: run this once, against any node.
#
# Door accounts are door.SITE.DOOR, as in deploy/mosquitto: site and door names never contain "."
# (nor "/", "+", "#" or a space), so one name is one door (door-SITE-DOOR was not:
# hn-archive/1-scan-room and hn-archive-1/scan-room were one account). The script never touches
# another door's account: it refuses a door whose session queue (named by its client id) another
# door's account may already use, as accessctl-hn-archive-1-scan-room would be for both of those.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: add-door.sh [options] door SITE DOOR     username door.SITE.DOOR
       add-door.sh [options] station NAME       username NAME (a station or supervisor tool)

The password is taken from, in order: --generate (a new random one), the MQTT_PASSWORD
environment variable, the first line of standard input when it is not a terminal, or a prompt.
It reaches rabbitmqctl on its standard input, never on a command line.

  --vhost VHOST        virtual host (default /; must match mqtt.vhost in rabbitmq.conf)
  --prefix PREFIX      topic prefix (default accessctl; the controllers' [mqtt] prefix)
  --client-id ID       the door's MQTT client id (default accessctl-SITE-DOOR, the controllers'
                       default): only this id (and ID-doctor) may own the door's session queue;
                       refused when another door's account may already use that queue
  --generate           make a random password
  --password-out FILE  also write the password to FILE (mode 0600); with --generate and no
                       --password-out the password is printed once on standard output
  -h, --help           this text

RABBITMQCTL (environment) is the command that runs rabbitmqctl, split on spaces
(default: rabbitmqctl). For the lab cluster:
  RABBITMQCTL="deploy/rabbitmq/lab-cluster.sh ctl /tmp/lab 1" ./add-door.sh door hn-archive-1 vault

Examples:
  ./add-door.sh --generate --password-out vault.password door hn-archive-1 vault
  MQTT_PASSWORD='...' ./add-door.sh station station-1
EOF
}

die() { echo "add-door.sh: $*" >&2; exit 2; }
refuse() { echo "add-door.sh: $*" >&2; exit 1; }

vhost=/ prefix=accessctl client_id="" generate=0 password_out=""
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --vhost) vhost="${2:?--vhost needs a value}"; shift 2 ;;
        --prefix) prefix="${2:?--prefix needs a value}"; shift 2 ;;
        --client-id) client_id="${2:?--client-id needs a value}"; shift 2 ;;
        --generate) generate=1; shift ;;
        --password-out) password_out="${2:?--password-out needs a file}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option: $1" ;;
        *) args+=("$1"); shift ;;
    esac
done

name_re='^[a-z0-9][a-z0-9_-]{0,62}$'  # firmware_py/config/schema.py's site and door names: never a "."
[[ "$prefix" =~ ^[A-Za-z0-9_-]+$ ]] || die "prefix '$prefix': one topic level of letters, digits, - and _"

# Regular expressions over routing keys (MQTT topic with '/' as '.'); names are checked above
# to hold no regex metacharacters, so they can be pasted in as they are.
case "${args[0]:-}" in
    door)
        [[ ${#args[@]} -eq 3 ]] || { usage >&2; die "door needs SITE and DOOR"; }
        site="${args[1]}" door="${args[2]}"
        [[ "$site" =~ $name_re ]] \
            || die "site '$site': use lower-case letters, digits, - and _ (at most 63; never '.', '/', '+', '#')"
        [[ "$door" =~ $name_re ]] \
            || die "door '$door': use lower-case letters, digits, - and _ (at most 63; never '.', '/', '+', '#')"
        username="door.$site.$door"
        client_id="${client_id:-accessctl-$site-$door}"
        [[ "$client_id" =~ ^[A-Za-z0-9_-]+$ ]] || die "client id '$client_id': letters, digits, - and _"
        # Resource permissions: the MQTT plugin keeps a client's subscriptions in the queue
        # mqtt-subscription-<client id>qos0/qos1 and publishes to amq.topic. Only the door's own
        # client id may declare, bind or consume its session queue.
        queue="mqtt-subscription-$client_id(-doctor)?qos[01]"
        configure="^$queue\$"
        write="^(amq\\.topic|$queue)\$"
        read="^(amq\\.topic|$queue)\$"
        # Topic permissions: write = publish (events, status and its will, occupancy, command
        # results); read = subscribe (own commands, the site's time beacon and roster).
        topic_write="^$prefix\\.$site\\.$door\\.(events\\..+|status|occupancy|cmd\\.result)\$"
        topic_read="^$prefix\\.$site\\.($door\\.cmd|time|roster(\\.chunks\\.[^.]+)?)\$"
        ;;
    station)
        [[ ${#args[@]} -eq 2 ]] || { usage >&2; die "station needs NAME"; }
        username="${args[1]}"
        [[ "$username" =~ ^[A-Za-z0-9_.-]+$ && "$username" != door-* && "$username" != door.* ]] \
            || die "station name '$username': letters, digits, . - _ and not starting with door. or door-"
        configure='^mqtt-subscription-.*$'
        write='^(amq\.topic|mqtt-subscription-.*)$'
        read='^(amq\.topic|mqtt-subscription-.*)$'
        topic_write="^$prefix\\.[^.]+\\.([^.]+\\.cmd|time|roster(\\.chunks\\.[^.]+)?)\$"
        topic_read="^$prefix\\..*"
        ;;
    *) usage >&2; die "say 'door SITE DOOR' or 'station NAME'" ;;
esac

read -r -a rabbitmqctl <<<"${RABBITMQCTL:-rabbitmqctl}"
command -v "${rabbitmqctl[0]}" >/dev/null || die "${rabbitmqctl[0]} not found (apt-get install rabbitmq-server)"

# Never another door's account. A door account (door.SITE.DOOR, or door-SITE-DOOR made by an older
# version of this script) other than this one whose resource permissions already cover this door's
# session queues would share them; and a station name must not be a door's.
if [[ "${args[0]}" == door ]]; then
    permissions="$("${rabbitmqctl[@]}" list_permissions -p "$vhost" -q --no-table-headers)" \
        || die "cannot list the permissions of vhost $vhost"
    while IFS=$'\t' read -r other other_configure _; do
        [[ "$other" == door.* || "$other" == door-* ]] || continue
        [[ "$other" == "$username" ]] && continue
        for q in "mqtt-subscription-${client_id}qos0" "mqtt-subscription-${client_id}qos1" \
                 "mqtt-subscription-${client_id}-doctorqos1"; do
            if [[ "$q" =~ $other_configure ]]; then
                refuse "door $site/$door: its session queue $q is already $other's (client id $client_id):" \
                       "this would give one door another's account. Give this door its own [mqtt] client_id" \
                       "in its configuration and pass it here with --client-id; nothing was changed"
            fi
        done
    done <<<"$permissions"
fi

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

# Added, or its password changed if it exists: asked of the broker in one step, because
# `list_users` can print a bare ":terminated" while a node is busy, which read as "no such user".
if added="$(printf '%s\n' "$password" | "${rabbitmqctl[@]}" add_user "$username" 2>&1)"; then
    echo "user $username added"
elif [[ "$added" == *"already exists"* ]]; then
    printf '%s\n' "$password" | "${rabbitmqctl[@]}" change_password "$username" >/dev/null
    echo "password changed for $username"
else
    die "the broker did not add $username: $added"
fi
"${rabbitmqctl[@]}" set_permissions -p "$vhost" "$username" "$configure" "$write" "$read" >/dev/null
"${rabbitmqctl[@]}" set_topic_permissions -p "$vhost" "$username" amq.topic "$topic_write" "$topic_read" >/dev/null
echo "permissions set for $username in vhost $vhost: publish $topic_write, read $topic_read"

if [[ -n "$password_out" ]]; then
    (umask 077; printf '%s\n' "$password" >"$password_out")
    chmod 0600 "$password_out"
    echo "password written to $password_out"
elif [[ $generate -eq 1 ]]; then
    echo "password for $username: $password"
fi
