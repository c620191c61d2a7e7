#!/usr/bin/env bash
# lab-cluster.sh — a three-node RabbitMQ cluster with the MQTT plugin on loopback, for tests.
#
# Not for production (see README.md and rabbitmq.conf.example there). Everything lives under
# DIR: one folder per node (config, data, logs, pid file), a private Erlang cookie and a
# private epmd, so several lab clusters (and the machine's own RabbitMQ, if any) can run side
# by side. Every listener -- MQTT, AMQP, Erlang distribution and epmd -- is bound to 127.0.0.1.
# Persistent MQTT sessions get quorum queues (three members), so a subscriber keeps what
# arrives while any one node is down.
#
# Each node runs in its own session and process group (setsid): `kill DIR N` sends SIGKILL to
# the whole group -- the rabbitmq-server wrapper *and* the Erlang VM it starts as a child --
# which is what a power cut or an OOM kill does to a real node.
set -euo pipefail

RABBIT_BIN=${RABBIT_BIN:-/usr/lib/rabbitmq/bin}
NODES=3
START_TIMEOUT_S=${LAB_START_TIMEOUT_S:-120}

usage() {
    cat <<'EOF'
Usage: lab-cluster.sh start DIR       start three nodes in DIR (a new or stopped lab) and cluster
                                      them; prints one mqtt://127.0.0.1:PORT line per node
       lab-cluster.sh kill DIR N      kill node N (1-3) with SIGKILL, its whole process group
       lab-cluster.sh restart DIR N   start node N again (it rejoins the cluster)
       lab-cluster.sh stop DIR        stop every node and the lab's epmd (safe to repeat)
       lab-cluster.sh urls DIR        print the nodes' MQTT URLs again
       lab-cluster.sh ctl DIR N ARGS  run rabbitmqctl ARGS against node N
                                      (e.g. ctl DIR 1 add_user door-x secret)
       lab-cluster.sh status DIR      which nodes are running

The lab is on loopback only; the guest account (loopback only) administers it. Timeouts:
LAB_START_TIMEOUT_S (default 120) for each node to boot.
EOF
}

die() { echo "lab-cluster.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------- layout and environment

load_ports() {
    [[ -f "$DIR/ports.env" ]] || die "$DIR has no lab cluster (no ports.env): run 'start $DIR' first"
    # shellcheck source=/dev/null
    . "$DIR/ports.env"
}

check_node_number() {
    [[ "${1:-}" =~ ^[1-3]$ ]] || die "node number must be 1, 2 or 3, not '${1:-}'"
}

# The environment rabbitmq-server and rabbitmqctl need for node $1. Nothing is read from
# /etc/rabbitmq: RABBITMQ_CONF_ENV_FILE, RABBITMQ_CONFIG_FILE and RABBITMQ_ADVANCED_CONFIG_FILE
# all point into the node's folder.
node_env() {
    local n=$1 d="$DIR/node$1"
    local mqtt_var="MQTT_PORT_$n" amqp_var="AMQP_PORT_$n" dist_var="DIST_PORT_$n"
    echo "HOME=$DIR/home"
    echo "ERL_EPMD_ADDRESS=127.0.0.1"
    echo "ERL_EPMD_PORT=$EPMD_PORT"
    echo "RABBITMQ_NODENAME=rabbit$n@localhost"
    echo "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1"
    echo "RABBITMQ_NODE_PORT=${!amqp_var}"
    echo "RABBITMQ_DIST_PORT=${!dist_var}"
    echo "RABBITMQ_MNESIA_BASE=$d/mnesia"
    echo "RABBITMQ_LOG_BASE=$d/log"
    echo "RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins"
    echo "RABBITMQ_CONFIG_FILE=$d/rabbitmq.conf"
    echo "RABBITMQ_ADVANCED_CONFIG_FILE=$d/advanced.config"
    echo "RABBITMQ_CONF_ENV_FILE=$d/rabbitmq-env.conf"
    echo "RABBITMQ_PID_FILE=$d/pid"
    echo "ERL_CRASH_DUMP=$d/erl_crash.dump"
    # Erlang distribution on loopback only; schedulers that do not spin when idle (three
    # nodes share a small machine).
    echo "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none"
    # rabbitmqctl is a (hidden) Erlang node too: loopback, and a port range of its own
    # instead of the fixed default 35672-35682 that every lab on the machine would share.
    echo "RABBITMQ_CTL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
    echo "RABBITMQ_CTL_DIST_PORT_MIN=$CTL_PORT_MIN"
    echo "RABBITMQ_CTL_DIST_PORT_MAX=$CTL_PORT_MAX"
}

# NODE_ENV: the environment of node $1 as NAME=VALUE words for env(1).
set_node_env() {
    NODE_ENV=()
    local line
    while IFS= read -r line; do NODE_ENV+=("$line"); done < <(node_env "$1")
}

# Run a command with node $1's environment (and nothing inherited that could point elsewhere).
with_node_env() {
    local n=$1; shift
    set_node_env "$n"
    env -u RABBITMQ_NODENAME -u RABBITMQ_CONFIG_FILE -u RABBITMQ_CONF_ENV_FILE "${NODE_ENV[@]}" \
        PATH="$RABBIT_BIN:/usr/sbin:/usr/bin:/sbin:/bin" "$@"
}

ctl() {
    local n=$1; shift
    with_node_env "$n" "$RABBIT_BIN/rabbitmqctl" -n "rabbit$n@localhost" "$@"
}

log_tail() {
    local n=$1 f
    echo "---- node $n: last lines of its logs ($DIR/node$n) ----" >&2
    for f in "$DIR/node$n/stdout.log" "$DIR/node$n"/log/*.log; do
        [[ -s "$f" ]] || continue
        echo "== $f" >&2
        tail -n 25 "$f" >&2
    done
}

# Free loopback TCP ports, all different: bind them all at once, then let them go.
pick_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Is any process of group $1 alive (zombies waiting to be reaped do not count)?
pgid_alive() {
    local pgid=$1
    [[ -n "$pgid" ]] || return 1
    ps -e -o pgid=,stat= | awk -v g="$pgid" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

node_running() {
    local f="$DIR/node$1/pgid"
    [[ -f "$f" ]] && pgid_alive "$(cat "$f")"
}

# ---------------------------------------------------------------- epmd

start_epmd() {
    if [[ -f "$DIR/epmd.pgid" ]] && pgid_alive "$(cat "$DIR/epmd.pgid")"; then
        return
    fi
    # A script has no job control, so the background child is not a group leader and setsid
    # runs epmd in place: $! is epmd's pid, its session and its process group.
    setsid epmd -address 127.0.0.1 -port "$EPMD_PORT" >"$DIR/epmd.log" 2>&1 </dev/null &
    echo $! >"$DIR/epmd.pgid"
    local i
    for i in $(seq 50); do
        if epmd -port "$EPMD_PORT" -names >/dev/null 2>&1; then return; fi
        sleep 0.1
    done
    cat "$DIR/epmd.log" >&2 || true
    die "the lab's epmd did not start on 127.0.0.1:$EPMD_PORT"
}

# ---------------------------------------------------------------- nodes

write_node_files() {
    local n=$1 d="$DIR/node$1"
    local mqtt_var="MQTT_PORT_$n" amqp_var="AMQP_PORT_$n"
    mkdir -p "$d/mnesia" "$d/log"
    : >"$d/rabbitmq-env.conf"
    cat >"$d/rabbitmq.conf" <<EOF
# lab node rabbit$n@localhost (written by lab-cluster.sh)
listeners.tcp.default = 127.0.0.1:${!amqp_var}
mqtt.listeners.tcp.default = 127.0.0.1:${!mqtt_var}
mqtt.allow_anonymous = false
mqtt.vhost = /
mqtt.exchange = amq.topic
# persistent sessions (clean session off) live in quorum queues replicated on every node
mqtt.durable_queue_type = quorum
# as in rabbitmq.conf.example: sessions kept 30 days, 1,000 unacknowledged deliveries per client
mqtt.subscription_ttl = 2592000000
mqtt.prefetch = 1000
loopback_users.guest = true
log.file.level = info
log.console = false
EOF
    with_node_env "$n" "$RABBIT_BIN/rabbitmq-plugins" --offline enable rabbitmq_mqtt \
        >"$d/plugins.log" 2>&1 || { cat "$d/plugins.log" >&2; die "node $n: cannot enable rabbitmq_mqtt"; }
}

launch_node() {
    local n=$1 d="$DIR/node$1"
    rm -f "$d/pid"
    echo "=== $(date -Is) start" >>"$d/stdout.log"
    set_node_env "$n"
    # Not through a shell function: then $! would be a subshell's pid. Here env execs setsid,
    # which (not being a group leader) execs rabbitmq-server in place, so $! is the pid of the
    # wrapper, the leader of the node's new session and process group.
    env -u RABBITMQ_NODENAME -u RABBITMQ_CONFIG_FILE -u RABBITMQ_CONF_ENV_FILE "${NODE_ENV[@]}" \
        PATH="$RABBIT_BIN:/usr/sbin:/usr/bin:/sbin:/bin" \
        setsid "$RABBIT_BIN/rabbitmq-server" >>"$d/stdout.log" 2>&1 </dev/null &
    echo $! >"$d/pgid"
}

# Wait until node $1 has booted (rabbitmqctl wait on its pid file); fail at once, with the
# node's log tail, if its processes die first.
wait_node() {
    local n=$1 d="$DIR/node$1"
    ctl "$n" wait "$d/pid" --timeout "$START_TIMEOUT_S" >"$d/wait.log" 2>&1 &
    local waiter=$! rc=0
    while kill -0 "$waiter" 2>/dev/null; do
        if ! node_running "$n"; then
            kill "$waiter" 2>/dev/null || true
            wait "$waiter" 2>/dev/null || true
            log_tail "$n"
            die "node $n (rabbit$n@localhost) exited while starting"
        fi
        sleep 0.2
    done
    wait "$waiter" || rc=$?
    if [[ $rc -ne 0 ]]; then
        cat "$d/wait.log" >&2 || true
        log_tail "$n"
        die "node $n (rabbit$n@localhost) did not start within ${START_TIMEOUT_S} s"
    fi
}

kill_node() {
    local n=$1 f="$DIR/node$1/pgid"
    if ! node_running "$n"; then
        return 1
    fi
    local pgid
    pgid=$(cat "$f")
    kill -KILL -- "-$pgid" 2>/dev/null || true
    local i
    for i in $(seq 100); do
        pgid_alive "$pgid" || { rm -f "$f" "$DIR/node$n/pid"; return 0; }
        sleep 0.05
    done
    die "node $n: process group $pgid still alive after SIGKILL"
}

urls() {
    local n var
    for n in $(seq $NODES); do
        var="MQTT_PORT_$n"
        echo "mqtt://127.0.0.1:${!var}"
    done
}

# ---------------------------------------------------------------- commands

cmd_start() {
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    if [[ -f "$DIR/ports.env" ]]; then
        load_ports
        local n
        for n in $(seq $NODES); do
            node_running "$n" && die "$DIR: node $n is already running (stop it first, or use restart)"
        done
    else
        local p
        read -r -a p <<<"$(pick_ports 11)"
        # The CLI's distribution range: the 11th port and the 10 above it (the CLI picks a
        # free one in the range; a collision only means it tries the next).
        cat >"$DIR/ports.env" <<EOF
EPMD_PORT=${p[0]}
MQTT_PORT_1=${p[1]}
MQTT_PORT_2=${p[2]}
MQTT_PORT_3=${p[3]}
AMQP_PORT_1=${p[4]}
AMQP_PORT_2=${p[5]}
AMQP_PORT_3=${p[6]}
DIST_PORT_1=${p[7]}
DIST_PORT_2=${p[8]}
DIST_PORT_3=${p[9]}
CTL_PORT_MIN=${p[10]}
CTL_PORT_MAX=$(( p[10] + 10 > 65535 ? 65535 : p[10] + 10 ))
EOF
        load_ports
    fi
    mkdir -p "$DIR/home"
    if [[ ! -s "$DIR/home/.erlang.cookie" ]]; then
        (umask 077; head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$DIR/home/.erlang.cookie")
    fi
    chmod 0400 "$DIR/home/.erlang.cookie"
    start_epmd
    local n
    for n in $(seq $NODES); do write_node_files "$n"; done
    # Boot all three at once (a node that is not clustered yet needs nobody), then join 2 and 3
    # to node 1. On a restart of a stopped lab the nodes already know each other.
    for n in $(seq $NODES); do launch_node "$n"; done
    for n in $(seq $NODES); do wait_node "$n"; done
    for n in 2 3; do
        if ! ctl 1 cluster_status --formatter json 2>/dev/null | grep -q "rabbit$n@localhost"; then
            { ctl "$n" stop_app && ctl "$n" join_cluster "rabbit1@localhost" && ctl "$n" start_app; } \
                >"$DIR/node$n/join.log" 2>&1 \
                || { cat "$DIR/node$n/join.log" >&2; log_tail "$n"; die "node $n could not join rabbit1@localhost"; }
        fi
    done
    local running
    running=$(ctl 1 cluster_status --formatter json 2>/dev/null \
        | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))' || echo 0)
    [[ "$running" == "$NODES" ]] || { ctl 1 cluster_status >&2 || true; die "cluster has $running running nodes, not $NODES"; }
    urls
}

cmd_kill() {
    load_ports
    kill_node "$1" || die "node $1 is not running"
}

cmd_restart() {
    local n=$1
    load_ports
    node_running "$n" && die "node $n is running: kill or stop it first"
    start_epmd
    launch_node "$n"
    wait_node "$n"
}

cmd_stop() {
    if [[ ! -f "$DIR/ports.env" ]]; then
        echo "lab-cluster.sh: nothing to stop in $DIR" >&2
        return 0
    fi
    load_ports
    local n pgid
    # Ask politely first (quorum queues hand over leadership), then make sure.
    for n in $(seq $NODES); do
        if node_running "$n"; then
            ctl "$n" stop --timeout 10 >/dev/null 2>&1 &
        fi
    done
    wait || true
    for n in $(seq $NODES); do
        if [[ -f "$DIR/node$n/pgid" ]]; then
            pgid=$(cat "$DIR/node$n/pgid")
            local i
            for i in $(seq 60); do pgid_alive "$pgid" || break; sleep 0.1; done
            pgid_alive "$pgid" && kill -KILL -- "-$pgid" 2>/dev/null || true
            rm -f "$DIR/node$n/pgid" "$DIR/node$n/pid"
        fi
    done
    if [[ -f "$DIR/epmd.pgid" ]]; then
        pgid=$(cat "$DIR/epmd.pgid")
        pgid_alive "$pgid" && kill -TERM -- "-$pgid" 2>/dev/null || true
        rm -f "$DIR/epmd.pgid"
    fi
    echo "lab cluster in $DIR stopped"
}

cmd_status() {
    load_ports
    local n
    for n in $(seq $NODES); do
        if node_running "$n"; then echo "node $n: running"; else echo "node $n: down"; fi
    done
}

main() {
    local cmd=${1:-}
    case "$cmd" in
        -h|--help|help) usage; exit 0 ;;
        start|stop|urls|status) [[ $# -eq 2 ]] || { usage >&2; exit 2; } ;;
        kill|restart) [[ $# -eq 3 ]] || { usage >&2; exit 2; }; check_node_number "$3" ;;
        ctl) [[ $# -ge 3 ]] || { usage >&2; exit 2; }; check_node_number "$3" ;;
        *) usage >&2; exit 2 ;;
    esac
    DIR=$2
    if [[ -d "$DIR" ]]; then DIR=$(cd "$DIR" && pwd); fi
    case "$cmd" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        urls) load_ports; urls ;;
        status) cmd_status ;;
        kill) cmd_kill "$3" ;;
        restart) cmd_restart "$3" ;;
        ctl) load_ports; local n=$3; shift 3; ctl "$n" "$@" ;;
    esac
}

main "$@"
