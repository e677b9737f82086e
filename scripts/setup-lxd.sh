#!/usr/bin/env bash
# Install, start and initialise LXD for github-runner on this host. Idempotent; run as root.
#
# What it ensures, in order (each step is checked first and only done when needed):
#   1. the LXD package (Debian: apt `lxd`; Ubuntu: the `lxd` snap) and the tools the storage
#      driver needs (btrfs-progs for btrfs);
#   2. a running daemon: when no service manager runs LXD (no systemd as PID 1) the script starts
#      `lxd` itself in the background, logging to /var/log/lxd/lxd.log, and waits until it answers;
#   3. server config `images.auto_update_interval: "0"` (no image server is reachable);
#   4. a storage pool (default name `default`; driver btrfs on a loop file, or dir);
#   5. a `default` profile that holds ONLY the root disk: no NIC, no network, never a bridge.
#      Containers reach host services through loopback `proxy` devices only.
#
# Storage driver: btrfs by default, chosen by measurement on this machine (Debian 12, 2 cores,
# LXD 5.0.2, the `--test` image, 2026-11-23; times until `lxc exec c true` succeeds; 5 runs each,
# shared machine, so orders of magnitude):
#                                              btrfs (loop file)   dir
#   launch from image, page cache warm         1.7-2.0 s           2.3-4.7 s
#   launch from image, caches dropped          5.3-6.3 s           4.6-8.8 s
#   copy of a stopped, once-started template   0.8-1.3 s           4.3-5.8 s
#   copy of a never-started template           1.5-2.1 s (remap)   2.8-4.5 s
#   delete --force of a running container      0.74-0.85 s         2.6-3.8 s
# btrfs clones the image instead of unpacking it and never hits the warm-cache slowdown of dir
# (MACHINE-FACTS: up to ~12 s a launch). It needs btrfs-progs installed before LXD starts and a
# kernel with btrfs; otherwise use --driver dir. Daemon start ~0.6 s; first install ~15 s.
#
# Usage: setup-lxd.sh [--driver btrfs|dir] [--pool NAME] [--size 30GiB] [--stop]
#   --stop   shut the LXD daemon down (lxd shutdown) and exit; a later run starts it again.
# Environment: LXD_LOG_DIR (default /var/log/lxd).
set -euo pipefail

DRIVER="btrfs"
POOL="default"
SIZE="30GiB"
STOP=0
LOG_DIR="${LXD_LOG_DIR:-/var/log/lxd}"
CHANGED=0

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//' | grep -v '^set -euo'
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --driver) DRIVER="$2"; shift 2 ;;
        --pool) POOL="$2"; shift 2 ;;
        --size) SIZE="$2"; shift 2 ;;
        --stop) STOP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "setup-lxd: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

case "$DRIVER" in
    btrfs|dir) ;;
    *) echo "setup-lxd: unsupported driver $DRIVER (btrfs or dir)" >&2; exit 2 ;;
esac

log() { echo "setup-lxd: $*"; }
did() { CHANGED=1; log "$*"; }

if [[ $EUID -ne 0 ]]; then
    echo "setup-lxd: must run as root" >&2
    exit 1
fi

is_ubuntu() { grep -qi '^ID=ubuntu' /etc/os-release 2>/dev/null; }

# LXD binaries: the snap puts them under /snap/bin, Debian under /usr/bin.
if is_ubuntu; then
    export PATH="/snap/bin:$PATH"
fi

daemon_up() { timeout 10 lxc query /1.0 >/dev/null 2>&1; }

# Is the daemon managed by a service manager (systemd or the snap)? Then never start it by hand.
service_managed() {
    [[ "$(ps -p 1 -o comm= 2>/dev/null)" == "systemd" ]]
}

start_daemon() {
    mkdir -p "$LOG_DIR"
    if service_managed; then
        if is_ubuntu; then
            systemctl start snap.lxd.daemon
        else
            systemctl start lxd.socket lxd.service
        fi
    else
        # The packaged init script fails here (`ulimit -n 65536` is above the hard limit), so
        # run the daemon directly, detached from this shell.
        setsid nohup /usr/bin/lxd --group root --logfile="$LOG_DIR/lxd.log" \
            </dev/null >>"$LOG_DIR/lxd.stdout.log" 2>&1 &
    fi
    if ! timeout 70 lxd waitready --timeout=60; then
        echo "setup-lxd: LXD did not become ready; see $LOG_DIR/lxd.log" >&2
        exit 1
    fi
}

stop_daemon() {
    if daemon_up; then
        timeout 120 lxd shutdown --timeout=100 || true
    fi
    # Wait for the socket to stop answering (bounded).
    for _ in $(seq 1 100); do
        daemon_up || return 0
        sleep 0.1
    done
    echo "setup-lxd: LXD still answers after shutdown" >&2
    exit 1
}

if [[ $STOP -eq 1 ]]; then
    if daemon_up; then
        stop_daemon
        log "LXD daemon stopped"
    else
        log "LXD daemon is not running; nothing to stop"
    fi
    exit 0
fi

# --- 1. packages ------------------------------------------------------------------------------
apt_install() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        timeout 300 apt-get update -q
    fi
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends \
        "${missing[@]}" \
        || { timeout 300 apt-get update -q && DEBIAN_FRONTEND=noninteractive timeout 900 \
            apt-get install -y -q --no-install-recommends "${missing[@]}"; }
    did "installed ${missing[*]}"
}

if is_ubuntu; then
    if ! snap list lxd >/dev/null 2>&1; then
        timeout 900 snap install lxd
        did "installed the lxd snap"
    fi
    [[ "$DRIVER" == "btrfs" ]] && apt_install btrfs-progs
else
    pkgs=(lxd lxd-client)
    [[ "$DRIVER" == "btrfs" ]] && pkgs+=(btrfs-progs)
    apt_install "${pkgs[@]}"
fi

# --- 2. daemon --------------------------------------------------------------------------------
if daemon_up; then
    # LXD probes storage tools at startup: a daemon started before btrfs-progs cannot use btrfs.
    if [[ "$DRIVER" == "btrfs" ]] \
        && ! lxc info | grep -A20 'storage_supported_drivers' | grep -q 'name: btrfs'; then
        log "restarting LXD so that it sees btrfs-progs"
        stop_daemon
        start_daemon
        did "LXD daemon restarted"
    else
        log "LXD daemon already running"
    fi
else
    start_daemon
    did "LXD daemon started (log: $LOG_DIR/lxd.log)"
fi

if [[ "$DRIVER" == "btrfs" ]] \
    && ! lxc info | grep -A20 'storage_supported_drivers' | grep -q 'name: btrfs'; then
    echo "setup-lxd: LXD does not offer the btrfs driver on this host; use --driver dir" >&2
    exit 1
fi

# --- 3. first initialisation: one preseed ----------------------------------------------------
# A fresh daemon (no storage pool at all) is initialised in one go; later runs only check and
# repair the individual settings below, so a second run changes nothing.
if [[ -z "$(lxc storage list -f csv 2>/dev/null)" ]]; then
    pool_config=""
    [[ "$DRIVER" == "btrfs" ]] && pool_config="  config:
    size: $SIZE"
    timeout 120 lxd init --preseed <<EOF_PRESEED
config:
  images.auto_update_interval: "0"
networks: []
storage_pools:
- name: $POOL
  driver: $DRIVER
$pool_config
profiles:
- name: default
  config: {}
  devices:
    root:
      type: disk
      path: /
      pool: $POOL
EOF_PRESEED
    did "initialised LXD with a preseed (pool $POOL: $DRIVER, no network, default profile: root disk only)"
fi

# --- 3b. server config ------------------------------------------------------------------------
if [[ "$(lxc config get images.auto_update_interval)" != "0" ]]; then
    lxc config set images.auto_update_interval 0
    did "set images.auto_update_interval=0"
fi

# --- 4. storage pool --------------------------------------------------------------------------
if lxc storage show "$POOL" >/dev/null 2>&1; then
    have="$(lxc storage list -f csv | awk -F, -v p="$POOL" '$1 == p {print $2}')"
    if [[ "$have" != "$DRIVER" ]]; then
        log "storage pool $POOL exists with driver $have (wanted $DRIVER); keeping it"
    else
        log "storage pool $POOL ($DRIVER) already exists"
    fi
else
    PROFILE_HAS_ROOT="$(lxc profile device get default root pool 2>/dev/null || true)"
    if [[ -n "$PROFILE_HAS_ROOT" && "$PROFILE_HAS_ROOT" != "$POOL" ]]; then
        log "default profile's root disk uses pool $PROFILE_HAS_ROOT; creating $POOL anyway"
    fi
    if [[ "$DRIVER" == "btrfs" ]]; then
        lxc storage create "$POOL" btrfs size="$SIZE" >/dev/null
    else
        lxc storage create "$POOL" dir >/dev/null
    fi
    did "created storage pool $POOL ($DRIVER)"
fi

# --- 5. default profile: root disk only ------------------------------------------------------
root_pool="$(lxc profile device get default root pool 2>/dev/null || true)"
if [[ -z "$root_pool" ]]; then
    lxc profile device add default root disk path=/ pool="$POOL" >/dev/null
    did "added root disk (pool $POOL) to the default profile"
elif [[ "$root_pool" != "$POOL" ]]; then
    log "default profile's root disk uses pool $root_pool; leaving it"
fi
for dev in $(lxc profile device list default); do
    [[ "$dev" == "root" ]] && continue
    lxc profile device remove default "$dev" >/dev/null
    did "removed device $dev from the default profile (only the root disk belongs there)"
done
# Never a network: report (do not delete) any managed network someone else created.
if lxc network list -f csv 2>/dev/null | awk -F, '$3 == "YES"' | grep -q .; then
    log "warning: managed LXD networks exist; github-runner does not use them"
fi

if [[ $CHANGED -eq 0 ]]; then
    log "nothing to do: LXD is installed, running and initialised"
else
    log "done: LXD ready (pool $POOL, driver $DRIVER, default profile without NIC)"
fi
