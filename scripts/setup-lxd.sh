#!/usr/bin/env bash
# Install, start and initialise LXD for github-runner on this host. Idempotent; run as root.
#
# What it ensures, in order (each step is checked first and only done when needed):
#   0. LXD's production kernel limits (the sysctl table of LXD's "Server settings for a LXD
#      production setup": inotify, keys, max_map_count, neighbour tables, aio, bpf JIT,
#      dmesg_restrict), applied at once (sysctl -w) and kept in
#      /etc/sysctl.d/60-github-runner-lxd.conf; a value that is already higher is never lowered
#      (the file records the higher one). With the kernel defaults (inotify instances 128, keys
#      200) more than ~17 containers on one host failed to start (MACHINE-FACTS);
#   1. the LXD package (Debian: apt `lxd`; Ubuntu: the `lxd` snap), the tools the storage
#      driver needs (btrfs-progs for btrfs), a firewall tool for LXD bridges (nftables; iptables
#      too when the running daemon already chose its xtables driver, so that it need not restart)
#      and dnsmasq-base (DHCP/DNS of LXD bridges and of the closed test network, harness/testnet.py);
#   2. a running daemon: when no service manager runs LXD (no systemd as PID 1) the script starts
#      `lxd` itself in the background, logging to /var/log/lxd/lxd.log, and waits until it answers;
#   3. server config `images.auto_update_interval: "0"` (no image server is reachable);
#   4. a storage pool (default name `default`; driver btrfs on a loop file, or dir); with
#      --source DIR it lives under DIR (the charm's Juju `runner` storage or a tmpfs): btrfs as
#      the loop file DIR/<pool>.img (LXD's own loop path is a symlink to it, so LXD attaches it
#      at start like any loop pool), dir as the directory DIR/<pool>. An existing pool that
#      lives elsewhere is refused, never moved. DIR must be there before LXD starts (at boot
#      too). Deleting such a btrfs pool removes LXD's link, not DIR/<pool>.img;
#   5. a `default` profile that holds ONLY the root disk: no NIC. Runners get theirs from the
#      runner profile (src/lxd/network.py) on the charm's own bridge (`ghr-<hex>`, made by the
#      charm, not here) or on the closed test network of the tests (`tn<hex>`).
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
# Usage: setup-lxd.sh [--driver btrfs|dir] [--pool NAME] [--size 30GiB] [--source DIR] [--stop]
#                     [--test-tools]
#   --source DIR  put the storage pool under DIR (an existing directory); see step 4.
#   --test-tools  also install what the integration tests run on test hosts: tinyproxy-bin (the
#                 proxy executable only: no service starts; the aproxy/proxy tests spawn it).
#   --stop        shut the LXD daemon down (lxd shutdown) and exit; a later run starts it again.
# Environment: LXD_LOG_DIR (default /var/log/lxd), LXD_DIR (the daemon's directory; default
# /var/lib/lxd, or /var/snap/lxd/common/lxd for the snap), SYSCTL_FILE (default
# /etc/sysctl.d/60-github-runner-lxd.conf).
set -euo pipefail

DRIVER="btrfs"
POOL="default"
SIZE="30GiB"
SOURCE=""
STOP=0
TEST_TOOLS=0
SYSCTL_FILE="${SYSCTL_FILE:-/etc/sysctl.d/60-github-runner-lxd.conf}"
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
        --source) SOURCE="${2:?--source needs a directory}"; shift 2 ;;
        --stop) STOP=1; shift ;;
        --test-tools) TEST_TOOLS=1; shift ;;
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

if [[ -n "$SOURCE" ]]; then
    [[ -d "$SOURCE" ]] || { echo "setup-lxd: --source $SOURCE is not a directory" >&2; exit 2; }
    SOURCE="$(realpath "$SOURCE")"
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

# --- 0. host kernel limits ----------------------------------------------------------------
# LXD's production table (doc/reference/server_settings.md): key and suggested value.
LIMITS=(
    "fs.aio-max-nr 524288"
    "fs.inotify.max_queued_events 1048576"
    "fs.inotify.max_user_instances 1048576"
    "fs.inotify.max_user_watches 1048576"
    "kernel.dmesg_restrict 1"
    "kernel.keys.maxbytes 2000000"
    "kernel.keys.maxkeys 2000"
    "net.core.bpf_jit_limit 1000000000"
    "net.ipv4.neigh.default.gc_thresh3 8192"
    "net.ipv6.neigh.default.gc_thresh3 8192"
    "vm.max_map_count 262144"
)

apply_host_limits() {
    local entry key want have path lines=""
    for entry in "${LIMITS[@]}"; do
        read -r key want <<<"$entry"
        path="/proc/sys/${key//.//}"
        if [[ ! -e "$path" ]]; then
            log "warning: this kernel has no $key; skipped"
            continue
        fi
        have="$(<"$path")"
        if (( have < want )); then
            if sysctl -q -w "$key=$want" >/dev/null 2>&1; then
                did "raised $key from $have to $want"
                have="$want"
            else
                log "warning: could not raise $key from $have to $want"
            fi
        fi
        # Persist the higher of the two: a boot must not lower what was already higher.
        (( have > want )) && want="$have"
        lines+="$key = $want"$'\n'
    done
    local content
    content="# LXD production kernel limits, written by github-runner scripts/setup-lxd.sh.
# Suggested values of LXD's production setup, or the host's value where that was higher.
$lines"
    if [[ ! -f "$SYSCTL_FILE" || "$(<"$SYSCTL_FILE")"$'\n' != "$content" ]]; then
        mkdir -p "$(dirname "$SYSCTL_FILE")"
        printf '%s' "$content" >"$SYSCTL_FILE.tmp"
        mv "$SYSCTL_FILE.tmp" "$SYSCTL_FILE"
        did "wrote $SYSCTL_FILE"
    fi
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

apply_host_limits

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
    # The snap bundles its firewall tools and dnsmasq; the test network needs the host's.
    pkgs=(dnsmasq-base)
    [[ "$DRIVER" == "btrfs" ]] && pkgs+=(btrfs-progs)
    apt_install "${pkgs[@]}"
else
    # nftables before the daemon's first start: LXD picks its firewall driver at start.
    pkgs=(lxd lxd-client nftables dnsmasq-base)
    [[ "$DRIVER" == "btrfs" ]] && pkgs+=(btrfs-progs)
    apt_install "${pkgs[@]}"
fi
if [[ $TEST_TOOLS -eq 1 ]]; then
    apt_install tinyproxy-bin
fi
if [[ -z "${LXD_DIR:-}" ]]; then
    if is_ubuntu; then LXD_DIR=/var/snap/lxd/common/lxd; else LXD_DIR=/var/lib/lxd; fi
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

# A daemon started before nftables was installed chose its xtables driver and needs iptables
# for any LXD bridge ("Failed clearing firewall ... iptables not found"). Installing iptables
# serves it without a restart (a restart would disturb running instances and their users).
if ! is_ubuntu && [[ "$(lxc info | awk '$1 == "firewall:" {print $2; exit}')" == "xtables" ]]; then
    apt_install iptables
fi

# --- pool location (--source) --------------------------------------------------------------
# Where the pool's data lives: btrfs -> its loop file, dir -> its directory (resolved).
pool_location() {
    local source
    source="$(lxc storage get "$POOL" source 2>/dev/null || true)"
    [[ -n "$source" ]] && realpath -m "$source"
}
# Prepare DIR for a new pool: dir -> DIR/<pool>; btrfs -> LXD's loop path links to DIR/<pool>.img
# (LXD creates and formats the file through the link and attaches it at every start).
prepare_source() {
    if [[ "$DRIVER" == "dir" ]]; then
        mkdir -p "$SOURCE/$POOL"
    else
        [[ ! -e "$SOURCE/$POOL.img" ]] || {
            echo "setup-lxd: $SOURCE/$POOL.img already exists; remove it or choose another --pool" >&2
            exit 1
        }
        mkdir -p "$LXD_DIR/disks"
        ln -sfn "$SOURCE/$POOL.img" "$LXD_DIR/disks/$POOL.img"
    fi
}
wanted_location() {
    if [[ "$DRIVER" == "dir" ]]; then echo "$SOURCE/$POOL"; else echo "$SOURCE/$POOL.img"; fi
}

# --- 3. first initialisation: one preseed ----------------------------------------------------
# A fresh daemon (no storage pool at all) is initialised in one go; later runs only check and
# repair the individual settings below, so a second run changes nothing.
if [[ -z "$(lxc storage list -f csv 2>/dev/null)" ]]; then
    pool_config=""
    [[ "$DRIVER" == "btrfs" ]] && pool_config="  config:
    size: $SIZE"
    if [[ -n "$SOURCE" ]]; then
        prepare_source
        [[ "$DRIVER" == "dir" ]] && pool_config="  config:
    source: $SOURCE/$POOL"
    fi
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
    if [[ -n "$SOURCE" && "$(pool_location)" != "$(wanted_location)" ]]; then
        echo "setup-lxd: storage pool $POOL lives at $(pool_location), not under --source" \
            "$SOURCE (wanted $(wanted_location)); refusing to move it: delete the pool or" \
            "choose another --pool" >&2
        exit 1
    fi
else
    PROFILE_HAS_ROOT="$(lxc profile device get default root pool 2>/dev/null || true)"
    if [[ -n "$PROFILE_HAS_ROOT" && "$PROFILE_HAS_ROOT" != "$POOL" ]]; then
        log "default profile's root disk uses pool $PROFILE_HAS_ROOT; creating $POOL anyway"
    fi
    [[ -z "$SOURCE" ]] || prepare_source
    if [[ "$DRIVER" == "btrfs" ]]; then
        lxc storage create "$POOL" btrfs size="$SIZE" >/dev/null
    elif [[ -n "$SOURCE" ]]; then
        lxc storage create "$POOL" dir source="$SOURCE/$POOL" >/dev/null
    else
        lxc storage create "$POOL" dir >/dev/null
    fi
    did "created storage pool $POOL ($DRIVER${SOURCE:+, under $SOURCE})"
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
# No network here: report (do not delete) any managed network someone else created. The closed
# test networks of harness/testnet.py (tn + 4 hex digits) and the charm's runner bridges (ghr-
# + 10 hex digits) are the project's own.
if lxc network list -f csv 2>/dev/null \
    | awk -F, '$3 == "YES" && $1 !~ /^tn[0-9a-f]{4}$/ && $1 !~ /^ghr-[0-9a-f]{10}$/' \
    | grep -q .; then
    log "warning: managed LXD networks exist; github-runner does not use them"
fi

if [[ $CHANGED -eq 0 ]]; then
    log "nothing to do: LXD is installed, running and initialised"
else
    log "done: LXD ready (pool $POOL, driver $DRIVER, default profile without NIC)"
fi
