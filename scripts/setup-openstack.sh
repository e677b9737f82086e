#!/usr/bin/env bash
# TEST INFRASTRUCTURE. Bring up a real, minimal OpenStack (Zed) control plane from Debian 12's
# packages, everything on 127.0.0.1, for tests/integration/openstack. Idempotent; run as root.
# No systemd: every service is started by hand in the background; logs and pid files live under
# $STATE (default /var/lib/github-runner-openstack). A second run with everything up returns
# in about a second.
#
# Steps (each checked first and only done when needed):
#   1. packages (debconf preseeded `<pkg>/configure_db false`, no recommends);
#   2. MariaDB on 127.0.0.1:3306, databases and a user `openstack`;
#   3. a RabbitMQ vhost `openstack` and user for nova and neutron (broker: setup-rabbitmq.sh);
#   4. config files in /etc/{keystone,glance,placement,nova,neutron} (the packages' own are kept
#      as *.pkg-orig), the test ML2 mechanism driver of scripts/openstack/ installed for neutron;
#   5. db syncs, keystone bootstrap, cell0/cell1;
#   6. services, one worker each: keystone :5000 and placement :8778 (uwsgi), glance-api :9292,
#      neutron-server :9696, nova-api :8774, nova-conductor, nova-scheduler, nova-compute with
#      the test compute driver scripts/openstack/lxd_virt_driver.py, installed as
#      nova/virt/github_runner_lxd.py: nova's fake driver (servers go ACTIVE, nothing runs),
#      except for servers of an image with the property github_runner_lxd=<LXD image alias>,
#      which run as LXD containers with their user data as the start script (see that file);
#   7. scripts/openstack/provision.py (openstacksdk): endpoints, service users, the charm's
#      project `runner` and user `runner` (role member), flavor `runner-small`, image
#      `runner-tiny` (64 KiB raw), network `runner-net` / subnet 198.18.100.0/24, then
#      $STATE/clouds.yaml with clouds `testcloud` (the charm's user) and `testcloud-admin`.
#
# Usage: setup-openstack.sh [--install-only | --stop]
# Environment: OPENSTACK_STATE (state dir), OPENSTACK_PYTHON (python with openstacksdk,
# default .venv/bin/python of this checkout).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
STATE="${OPENSTACK_STATE:-/var/lib/github-runner-openstack}"
PY="${OPENSTACK_PYTHON:-$REPO/.venv/bin/python}"
LOGDIR="$STATE/log"
RUN="$STATE/run"
HOST=127.0.0.1
PKGS=(mariadb-server keystone glance-api placement-api nova-api nova-conductor nova-scheduler
    nova-compute neutron-server python3-pymysql)
DB_PKGS=(keystone glance-api placement-api nova-api nova-conductor nova-scheduler nova-compute
    neutron-server)

log() { echo "setup-openstack: $(date +%T) $*"; }
die() { echo "setup-openstack: $*" >&2; exit 1; }

case "${1:-}" in
"" | --install-only | --stop) ;;
*) die "unknown argument: $1 (usage: setup-openstack.sh [--install-only | --stop])" ;;
esac
(($# <= 1)) || die "unknown argument: $2"
[[ $EUID -eq 0 ]] || die "must run as root"
T0=$(date +%s)

# ---------------------------------------------------------------------------------------------
# 1. packages
install_packages() {
    local missing=()
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        log "packages already installed"
        return
    fi
    for p in "${DB_PKGS[@]}"; do
        echo "$p $p/configure_db boolean false" | debconf-set-selections
    done
    if ! apt-cache show keystone >/dev/null 2>&1; then
        log "apt-get update (keystone unknown to apt)"
        apt-get update -q
    fi
    log "installing ${missing[*]}"
    local t=$(date +%s)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
        >"${INSTALL_LOG:-/tmp/setup-openstack-apt.log}" 2>&1 ||
        { tail -n 40 "${INSTALL_LOG:-/tmp/setup-openstack-apt.log}" >&2; die "apt-get failed"; }
    log "installed in $(($(date +%s) - t))s"
}

install_packages
[[ "${1:-}" == "--install-only" ]] && exit 0

# ---------------------------------------------------------------------------------------------
# helpers
port_open() { python3 -c "import socket,sys; socket.create_connection(('$HOST', $1), 1).close()" \
    2>/dev/null; }

# running NAME: true when the pid file names a live process (a zombie, dead but not yet reaped,
# is not one).
running() {
    [[ -f "$RUN/$1.pid" ]] || return 1
    local pid
    pid=$(cat "$RUN/$1.pid")
    kill -0 "$pid" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]
}

# start NAME CMD...: start CMD in the background (own session) unless NAME runs already. The
# service inherits no descriptor but 0-2: a lock its caller held (`flock LOCK setup-openstack.sh`)
# would otherwise stay held for the life of the service.
start() {
    local name=$1
    shift
    if running "$name"; then
        return
    fi
    log "starting $name (log $LOGDIR/$name.log)"
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if ((fd > 2)); then eval "exec $fd>&-" || true; fi
        done 2>/dev/null
        exec setsid nohup "$@" </dev/null >>"$LOGDIR/$name.log" 2>&1
    ) &
    echo $! >"$RUN/$name.pid"
}

# wait_port NAME PORT: wait (60 s) until PORT accepts, else fail with NAME's log tail.
wait_port() {
    local t=$(date +%s)
    until port_open "$2"; do
        if ! running "$1" || (($(date +%s) - t > 60)); then
            tail -n 30 "$LOGDIR/$1.log" >&2 || true
            die "$1 did not listen on $HOST:$2"
        fi
        sleep 0.3
    done
}

# once NAME CMD...: run CMD unless it already succeeded (stamp $STATE/done/NAME).
once() {
    local name=$1
    shift
    [[ -f "$STATE/done/$name" ]] && return
    log "running $name"
    "$@" >>"$LOGDIR/$name.log" 2>&1 || { tail -n 30 "$LOGDIR/$name.log" >&2; die "$name failed"; }
    touch "$STATE/done/$name"
}

# stop_one NAME: stop NAME's process group if it runs; forget its pid file.
stop_one() {
    local f="$RUN/$1.pid"
    [[ -f "$f" ]] || return 0
    local pid
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
        local t=$(date +%s)
        while kill -0 "$pid" 2>/dev/null && (($(date +%s) - t < 30)); do sleep 0.2; done
        log "stopped $1 ($pid)"
    fi
    rm -f "$f"
}

stop_all() {
    local f
    for f in "$RUN"/*.pid; do
        [[ -e "$f" ]] || continue
        local pid
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null; then
            kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
            log "stopped $(basename "$f" .pid) ($pid)"
        fi
        rm -f "$f"
    done
}

if [[ "${1:-}" == "--stop" ]]; then
    stop_all
    exit 0
fi

mkdir -p "$STATE/done" "$LOGDIR" "$RUN" "$STATE/images" "$STATE/staging" "$STATE/tasks" \
    "$STATE/nova" "$STATE/neutron"
chmod 700 "$STATE"
SERVICES=(mariadb keystone placement glance neutron nova-api nova-conductor nova-scheduler
    nova-compute)
all_up() {
    local s
    for s in "${SERVICES[@]}"; do running "$s" || return 1; done
    [[ -f "$STATE/done/provision-resources" && -f "$STATE/clouds.yaml" ]] &&
        port_open 5000 && port_open 8774 && port_open 9696
}
# The test compute driver (TEST INFRASTRUCTURE): nova loads compute_driver from the nova.virt
# package only, so the file goes there. When it changes (or is new), nova-compute is stopped so
# that the steps below rewrite nova.conf and start it with the driver.
NOVA_VIRT=$(/usr/bin/python3 -c "import os, nova.virt; print(os.path.dirname(nova.virt.__file__))")
DRIVER="$NOVA_VIRT/github_runner_lxd.py"
if ! cmp -s "$HERE/openstack/lxd_virt_driver.py" "$DRIVER"; then
    cp "$HERE/openstack/lxd_virt_driver.py" "$DRIVER.tmp" && mv "$DRIVER.tmp" "$DRIVER"
    log "installed the test compute driver as $DRIVER"
    stop_one nova-compute
fi
if all_up; then
    log "already up ($(($(date +%s) - T0))s); clouds: $STATE/clouds.yaml (cloud testcloud)," \
        "admin: $STATE/admin-clouds.yaml (cloud testcloud-admin)"
    exit 0
fi
"$PY" -c "import openstack" 2>/dev/null ||
    die "$PY cannot import openstacksdk (make venv; pip install openstacksdk)"

# passwords: made once, kept in $STATE/passwords.env (root only)
if [[ ! -f "$STATE/passwords.env" ]]; then
    pw() { python3 -c "import secrets; print(secrets.token_hex(12))"; }
    {
        echo "DB_PW=$(pw)"
        echo "RABBIT_PW=$(pw)"
        echo "ADMIN_PW=$(pw)"
        echo "SERVICE_PW=$(pw)"
        echo "RUNNER_PW=$(pw)"
    } >"$STATE/passwords.env"
    chmod 600 "$STATE/passwords.env"
fi
# shellcheck disable=SC1091
source "$STATE/passwords.env"
export ADMIN_PW SERVICE_PW RUNNER_PW STATE

# ---------------------------------------------------------------------------------------------
# 2. MariaDB
if ! running mariadb; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    start mariadb /usr/sbin/mariadbd --user=mysql --bind-address="$HOST" --port=3306 \
        --skip-name-resolve
fi
t=$(date +%s)
until mariadb-admin ping >/dev/null 2>&1; do
    (($(date +%s) - t > 60)) && { tail -n 30 "$LOGDIR/mariadb.log" >&2; die "mariadb did not start"; }
    running mariadb || { tail -n 30 "$LOGDIR/mariadb.log" >&2; die "mariadb exited"; }
    sleep 0.3
done
DBS=(keystone glance placement nova_api nova nova_cell0 neutron)
if [[ ! -f "$STATE/done/databases" ]]; then
    {
        for d in "${DBS[@]}"; do echo "CREATE DATABASE IF NOT EXISTS $d;"; done
        echo "CREATE USER IF NOT EXISTS 'openstack'@'127.0.0.1' IDENTIFIED BY '$DB_PW';"
        echo "ALTER USER 'openstack'@'127.0.0.1' IDENTIFIED BY '$DB_PW';"
        echo "GRANT ALL PRIVILEGES ON *.* TO 'openstack'@'127.0.0.1';"
    } | mariadb
    touch "$STATE/done/databases"
fi
db() { echo "mysql+pymysql://openstack:$DB_PW@$HOST/$1"; }

# ---------------------------------------------------------------------------------------------
# 3. RabbitMQ vhost and user
RABBITMQCTL=(env HOME=/var/lib/rabbitmq RABBITMQ_NODENAME=rabbit@localhost
    ERL_EPMD_ADDRESS="$HOST" runuser -u rabbitmq -- /usr/lib/rabbitmq/bin/rabbitmqctl -q)
if [[ ! -f "$STATE/done/rabbitmq" ]]; then
    port_open 5672 || "$REPO/scripts/setup-rabbitmq.sh"
    "${RABBITMQCTL[@]}" add_vhost openstack 2>/dev/null || true
    "${RABBITMQCTL[@]}" add_user openstack "$RABBIT_PW" 2>/dev/null ||
        "${RABBITMQCTL[@]}" change_password openstack "$RABBIT_PW"
    "${RABBITMQCTL[@]}" set_permissions -p openstack openstack ".*" ".*" ".*"
    touch "$STATE/done/rabbitmq"
fi
TRANSPORT="rabbit://openstack:$RABBIT_PW@$HOST:5672/openstack"

# ---------------------------------------------------------------------------------------------
# 4. configuration (the packages' files are kept once as *.pkg-orig)
# conf PATH: write stdin to PATH.
conf() {
    mkdir -p "$(dirname "$1")"
    [[ -f "$1" && ! -f "$1.pkg-orig" ]] && cp -p "$1" "$1.pkg-orig"
    cat >"$1"
}
authtoken() {
    cat <<EOT
[keystone_authtoken]
www_authenticate_uri = http://$HOST:5000
auth_url = http://$HOST:5000
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $SERVICE_PW
EOT
}
service_auth() {
    cat <<EOT
auth_url = http://$HOST:5000
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $SERVICE_PW
region_name = RegionOne
EOT
}

conf /etc/keystone/keystone.conf <<EOF2
[DEFAULT]
log_dir = $LOGDIR
[database]
connection = $(db keystone)
[token]
provider = fernet
[identity]
# test infrastructure: cheap password hashing (every service authenticates at start)
password_hash_rounds = 4
EOF2

conf /etc/placement/placement.conf <<EOF2
[DEFAULT]
log_dir = $LOGDIR
[api]
auth_strategy = keystone
[placement_database]
connection = $(db placement)
$(authtoken placement)
EOF2

conf /etc/glance/glance-api.conf <<EOF2
[DEFAULT]
bind_host = $HOST
bind_port = 9292
workers = 1
log_file = $LOGDIR/glance.log
enabled_backends = fs:file
[database]
connection = $(db glance)
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $STATE/images
[os_glance_staging_store]
filesystem_store_datadir = $STATE/staging
[os_glance_tasks_store]
filesystem_store_datadir = $STATE/tasks
[paste_deploy]
flavor = keystone
$(authtoken glance)
EOF2

conf /etc/neutron/neutron.conf <<EOF2
[DEFAULT]
bind_host = $HOST
bind_port = 9696
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 0
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = $TRANSPORT
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
state_path = $STATE/neutron
[database]
connection = $(db neutron)
[oslo_concurrency]
lock_path = $STATE/neutron/lock
[agent]
root_helper =
$(authtoken neutron)
EOF2

conf /etc/neutron/plugins/ml2/ml2_conf.ini <<EOF2
[ml2]
type_drivers = flat
tenant_network_types =
mechanism_drivers = github_runner_bind_all
extension_drivers = port_security
[ml2_type_flat]
flat_networks = physnet1
EOF2

conf /etc/nova/nova.conf <<EOF2
[DEFAULT]
my_ip = $HOST
host = openstack-test
state_path = $STATE/nova
enabled_apis = osapi_compute
osapi_compute_listen = $HOST
osapi_compute_listen_port = 8774
osapi_compute_workers = 1
# TEST INFRASTRUCTURE: fake driver + LXD containers for images tagged github_runner_lxd
compute_driver = github_runner_lxd.GithubRunnerLxdDriver
# periodic tasks (the scheduler's host discovery below) start at once, not after up to 60 s
periodic_fuzzy_delay = 0
transport_url = $TRANSPORT
use_neutron = true
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
[api]
auth_strategy = keystone
[api_database]
connection = $(db nova_api)
[database]
connection = $(db nova)
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 2
[oslo_concurrency]
lock_path = $STATE/nova/lock
[glance]
api_servers = http://$HOST:9292
[placement]
$(service_auth placement)
[neutron]
$(service_auth neutron)
[service_user]
send_service_user_token = false
[oslo_messaging_notifications]
driver = noop
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
$(authtoken nova)
EOF2

# the test ML2 driver, importable by the system python3 neutron-server runs with
SITE=$(/usr/bin/python3 -c "import site; print(site.getsitepackages()[0])")
mkdir -p "$SITE/github_runner_test_ml2-0.1.dist-info"
cp "$HERE/openstack/bind_all_ml2.py" "$SITE/github_runner_test_bind_all_ml2.py"
printf 'Metadata-Version: 2.1\nName: github-runner-test-ml2\nVersion: 0.1\n' \
    >"$SITE/github_runner_test_ml2-0.1.dist-info/METADATA"
printf '[neutron.ml2.mechanism_drivers]\ngithub_runner_bind_all = %s\n' \
    "github_runner_test_bind_all_ml2:BindAllMechanismDriver" \
    >"$SITE/github_runner_test_ml2-0.1.dist-info/entry_points.txt"

# ---------------------------------------------------------------------------------------------
# 5. database schemas, keystone bootstrap, cells (the independent chains run in parallel)
NEUTRON_CONF=(--config-file /etc/neutron/neutron.conf --config-file
    /etc/neutron/plugins/ml2/ml2_conf.ini)
keystone_chain() {
    local p=()
    once keystone-db keystone-manage db_sync & p+=($!)
    once keystone-fernet keystone-manage fernet_setup --keystone-user root --keystone-group root &
    p+=($!)
    once keystone-credential keystone-manage credential_setup --keystone-user root \
        --keystone-group root & p+=($!)
    for q in "${p[@]}"; do wait "$q" || return 1; done
    once keystone-bootstrap keystone-manage bootstrap --bootstrap-password "$ADMIN_PW" \
        --bootstrap-admin-url "http://$HOST:5000/v3/" \
        --bootstrap-internal-url "http://$HOST:5000/v3/" \
        --bootstrap-public-url "http://$HOST:5000/v3/" --bootstrap-region-id RegionOne
}
nova_chain() {
    local p=()
    once nova-api-db nova-manage api_db sync
    once nova-cell0 nova-manage cell_v2 map_cell0 & p+=($!)
    once nova-cell1 bash -c \
        'nova-manage cell_v2 list_cells | grep -q " cell1 " || nova-manage cell_v2 create_cell --name cell1' &
    p+=($!)
    for q in "${p[@]}"; do wait "$q" || return 1; done
    once nova-db nova-manage db sync
}
pids=()
keystone_chain & pids+=($!)
nova_chain & pids+=($!)
once glance-db glance-manage db_sync & pids+=($!)
once placement-db placement-manage db sync & pids+=($!)
once neutron-db neutron-db-manage "${NEUTRON_CONF[@]}" upgrade head & pids+=($!)
for p in "${pids[@]}"; do wait "$p" || die "a database step failed (logs in $LOGDIR)"; done

# ---------------------------------------------------------------------------------------------
# 6. services
uwsgi_app() { # NAME PORT WSGI-FILE
    start "$1" uwsgi --plugin python3 --http-socket "$HOST:$2" --wsgi-file "$3" --master \
        --processes 1 --threads 4 --enable-threads --die-on-term --buffer-size 65535 \
        --add-header "Connection: close"
}
uwsgi_app keystone 5000 /usr/bin/keystone-wsgi-public
wait_port keystone 5000
once provision-identity "$PY" "$HERE/openstack/provision.py" identity
uwsgi_app placement 8778 /usr/bin/placement-api
start glance glance-api --config-file /etc/glance/glance-api.conf
start neutron neutron-server "${NEUTRON_CONF[@]}" --log-file "$LOGDIR/neutron-server.log"
NOVA=(--config-file /etc/nova/nova.conf)
start nova-conductor nova-conductor "${NOVA[@]}" --log-file "$LOGDIR/nova-conductor-svc.log"
start nova-scheduler nova-scheduler "${NOVA[@]}" --log-file "$LOGDIR/nova-scheduler-svc.log"
if [[ -x /usr/bin/nova-api ]]; then
    start nova-api nova-api "${NOVA[@]}" --log-file "$LOGDIR/nova-api-svc.log"
else
    uwsgi_app nova-api 8774 /usr/bin/nova-api-wsgi
fi
start nova-compute nova-compute "${NOVA[@]}" --log-file "$LOGDIR/nova-compute-svc.log"
wait_port placement 8778
wait_port glance 9292
wait_port neutron 9696
wait_port nova-api 8774

# ---------------------------------------------------------------------------------------------
# 7. resources and clouds files
once provision-resources "$PY" "$HERE/openstack/provision.py" resources
# (the scheduler maps the compute host within ~2 s: discover_hosts_in_cells_interval; the
# hypervisor provision.py waits for is only listed once mapped). Listed is not bootable: right
# after a start the first servers can still go to ERROR (a CI run's first test met that twice),
# so every bring-up ends by booting one probe server (retried, each fault printed), then deletes it.
"$PY" "$HERE/openstack/provision.py" probe >>"$LOGDIR/provision-probe.log" 2>&1 ||
    die "no server boots: $(tail -n 5 "$LOGDIR/provision-probe.log")"
log "a probe server booted ($(grep -c 'went to ERROR' "$LOGDIR/provision-probe.log") ERROR tries logged)"
log "up in $(($(date +%s) - T0))s; clouds: $STATE/clouds.yaml (cloud testcloud)," \
    "admin: $STATE/admin-clouds.yaml (cloud testcloud-admin), names: $STATE/resources.json"
