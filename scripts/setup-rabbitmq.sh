#!/usr/bin/env bash
# Install and start a RabbitMQ broker bound to loopback only, for the reactive-mode broker tests
# (tests/integration/test_reactive_broker.py, marker `broker`). Idempotent; run as root.
#
# What it ensures, in order (each step is checked first and only done when needed):
#   1. the `rabbitmq-server` package (apt-get update first when the package is unknown);
#   2. a running broker: when nothing accepts AMQP on 127.0.0.1:5672 it starts
#      /usr/lib/rabbitmq/bin/rabbitmq-server in the background as user `rabbitmq`, with
#        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1        AMQP listener on loopback only
#        ERL_EPMD_ADDRESS=127.0.0.1                epmd (port 4369) on loopback only
#        -kernel inet_dist_use_interface {127,0,0,1}   Erlang distribution port on loopback only
#      and no service manager (this machine has no systemd as PID 1); its output goes to
#      $RABBITMQ_LOG (default /var/log/rabbitmq/setup-rabbitmq.log);
#   3. waits (deadline $RABBITMQ_WAIT seconds, default 60) until 127.0.0.1:5672 answers the AMQP
#      protocol header, else fails with the tail of the log.
# The broker keeps its default guest/guest account, which RabbitMQ only accepts from loopback.
#
# Usage: setup-rabbitmq.sh [--stop]
#   --stop   stop a broker started by this script (rabbitmqctl stop) and exit.
set -euo pipefail

PORT=5672
HOST=127.0.0.1
WAIT="${RABBITMQ_WAIT:-60}"
LOG="${RABBITMQ_LOG:-/var/log/rabbitmq/setup-rabbitmq.log}"
SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
CTL=/usr/lib/rabbitmq/bin/rabbitmqctl

log() { echo "setup-rabbitmq: $*"; }

if [[ $EUID -ne 0 ]]; then
    echo "setup-rabbitmq: must run as root" >&2
    exit 1
fi

broker_env() {
    env HOME=/var/lib/rabbitmq \
        RABBITMQ_NODE_IP_ADDRESS="$HOST" \
        RABBITMQ_NODE_PORT="$PORT" \
        RABBITMQ_NODENAME=rabbit@localhost \
        ERL_EPMD_ADDRESS="$HOST" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        "$@"
}

# True when something at HOST:PORT answers an AMQP 0-9-1 protocol header with a frame
# (connection.start begins with frame type 1). Bounded by a 2 s timeout.
amqp_answers() {
    python3 - "$HOST" "$PORT" <<'EOF'
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
        s.settimeout(2)
        s.sendall(b"AMQP\x00\x00\x09\x01")
        data = s.recv(1)
    sys.exit(0 if data == b"\x01" else 1)
except OSError:
    sys.exit(1)
EOF
}

if [[ "${1:-}" == "--stop" ]]; then
    if amqp_answers; then
        broker_env runuser -u rabbitmq -- "$CTL" stop
        log "stopped the broker"
    else
        log "no broker answers on $HOST:$PORT; nothing to stop"
    fi
    exit 0
fi

# 1. package
if [[ ! -x "$SERVER" ]]; then
    if ! apt-cache show rabbitmq-server >/dev/null 2>&1; then
        log "running apt-get update (rabbitmq-server unknown to apt)"
        apt-get update -q
    fi
    log "installing rabbitmq-server"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rabbitmq-server
    log "installed rabbitmq-server"
else
    log "rabbitmq-server already installed"
fi

# 2. broker
if amqp_answers; then
    log "a broker already answers AMQP on $HOST:$PORT; nothing to start"
    exit 0
fi

mkdir -p "$(dirname "$LOG")" /var/lib/rabbitmq
chown rabbitmq:rabbitmq /var/lib/rabbitmq "$(dirname "$LOG")"
# A previous broker may be half-up (epmd alive, node down); starting again is harmless.
log "starting rabbitmq-server on $HOST:$PORT (epmd and distribution on loopback), log $LOG"
broker_env setsid nohup runuser -u rabbitmq -- "$SERVER" </dev/null >>"$LOG" 2>&1 &

# 3. wait with a deadline
start=$(date +%s)
while ! amqp_answers; do
    if (( $(date +%s) - start >= WAIT )); then
        echo "setup-rabbitmq: broker did not answer on $HOST:$PORT within ${WAIT}s; log tail:" >&2
        tail -n 30 "$LOG" >&2 || true
        exit 1
    fi
    sleep 0.5
done
log "broker answers AMQP on $HOST:$PORT after $(( $(date +%s) - start ))s"
