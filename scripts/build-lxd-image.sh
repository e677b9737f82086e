#!/usr/bin/env bash
# Build the github-runner LXD image and import it under an alias. Run as root on the LXD host.
#
#   build-lxd-image.sh --test [--alias github-runner-test] [--runner-binary PATH] [--force]
#       The test CONTAINER image, built offline from a Debian bootstrap (mmdebstrap, Debian
#       mirror only): systemd as init, python3, curl, jq, bash, iproute2, sudo, a non-root
#       `ubuntu` user (uid 1000) the runner runs as, /etc/hostname per instance. The rootfs tarball
#       is cached under /var/cache/github-runner/ keyed by a hash of everything that goes into it,
#       so a second build takes seconds; if the alias already points at an identical image the
#       script changes nothing.
#       Network: an instance with a NIC (eth0 or en*) configures it by DHCP (IPv4 only) with
#       systemd-networkd, which is part of systemd (udev runs too: networkd waits for udev to have
#       seen a link; its coldplug is limited to network devices). No systemd-resolved: a path
#       unit watches networkd's leases and writes their DNS servers and domain into
#       /etc/resolv.conf. Nothing waits for the network (systemd-networkd-wait-online is masked),
#       so an instance without a NIC boots as before. The build host's resolv.conf is not kept.
#       Measured (2026-12-02, btrfs pool, load ~3 on 2 cores, medians of 6 interleaved runs,
#       `lxc start` -> `systemctl is-system-running` says running): before (no network config)
#       1.83 s without NIC; now 1.84 s without NIC, 1.97 s with a NIC on the test network, the
#       DHCP lease and resolv.conf ready ~0.05 s later (lease ~1.2-1.4 s after `lxc start`).
#
#   build-lxd-image.sh [--base jammy|noble] [--alias github-runner-<base>] [--runner-binary PATH]
#                      [--network lxdbr0] [--remote ubuntu]
#       The production VIRTUAL-MACHINE image: launches `<remote>:<base>` as a VM with a NIC on
#       --network (which must exist; this script never creates networks), installs the packages
#       runners expect, removes unattended-upgrades, masks the apt timers, optionally bakes the
#       runner application into /home/ubuntu/actions-runner and publishes the VM as the alias.
#       Needs an image server and VM support: it stops early with a clear message without them.
#
# --runner-binary PATH: a runner tarball (actions-runner-linux-x64-*.tar.gz or the sandbox's
# stand-in), extracted into /home/ubuntu/actions-runner and owned by ubuntu.
#
# Measured on this machine (Debian 12, 2 cores, btrfs pool, 2026-11-23):
#   test image, fresh: mmdebstrap ~30 s + pack/import ~3 s = ~33 s on an idle machine
#                      (167 s with load average 6 from other jobs)
#   test image, cached rootfs, new import: ~3 s; baking a runner tarball in: +~8 s once
#   test image, cached and alias already current ("nothing to do"): 1.1-4 s (the sha256 of the
#                      ~250 MB rootfs is most of it)
set -euo pipefail

# Part of the test image's cache key: bump it to force a rebuild (4: DHCP/DNS by networkd;
# 5: nftables + redsocks for experimental-use-aproxy, docker config directories).
SCRIPT_VERSION="5"
CACHE_DIR="${GITHUB_RUNNER_CACHE_DIR:-/var/cache/github-runner}"
SUITE="bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What the emulated runner (Python 3 stdlib) and a bash pre-job script (curl + jq) need, plus
# systemd for a real init (`systemctl is-system-running` is the readiness check) and udev, which
# systemd-networkd needs to configure a NIC; nftables and redsocks for experimental-use-aproxy
# (rules sending outbound 80/443 to redsocks; redsocks starts only when aproxy is on).
TEST_PACKAGES="systemd-sysv,dbus,udev,python3,ca-certificates,curl,jq,bash,iproute2,sudo,procps,tar,gzip,nftables,redsocks"
# Production VM image packages (Ubuntu).
VM_PACKAGES=(docker.io npm python3-pip shellcheck jq wget unzip gh build-essential
    python-is-python3 git curl ca-certificates nftables redsocks)

TEST=0
ALIAS=""
BASE="jammy"
RUNNER_BINARY=""
FORCE=0
NETWORK="lxdbr0"
REMOTE="ubuntu"

log() { echo "build-lxd-image: $*"; }
die() { echo "build-lxd-image: error: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//' | grep -v '^set -euo'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --test) TEST=1; shift ;;
        --alias) ALIAS="${2:?--alias needs a value}"; shift 2 ;;
        --base) BASE="${2:?--base needs a value}"; shift 2 ;;
        --runner-binary) RUNNER_BINARY="${2:?--runner-binary needs a path}"; shift 2 ;;
        --network) NETWORK="${2:?--network needs a value}"; shift 2 ;;
        --remote) REMOTE="${2:?--remote needs a value}"; shift 2 ;;
        --force) FORCE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ $EUID -eq 0 ]] || die "must run as root"
command -v lxc >/dev/null || die "lxc not found; run scripts/setup-lxd.sh first"
timeout 10 lxc query /1.0 >/dev/null 2>&1 \
    || die "the LXD daemon does not answer; run scripts/setup-lxd.sh first"
if [[ -n "$RUNNER_BINARY" ]]; then
    [[ -f "$RUNNER_BINARY" ]] || die "runner binary $RUNNER_BINARY is not a file"
    tar -tzf "$RUNNER_BINARY" >/dev/null 2>&1 || die "$RUNNER_BINARY is not a .tar.gz archive"
fi

START=$(date +%s.%N)
elapsed() { awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

# Fingerprint of the image behind an alias, empty when the alias does not exist.
alias_fingerprint() {
    lxc image list -f csv -c lf 2>/dev/null | awk -F, -v a="$1" '
        { n = split($1, names, /[ \n]+/); for (i = 1; i <= n; i++) if (names[i] == a) print $2 }' \
        | head -n1
}

full_fingerprint() {
    { timeout 30 lxc query "/1.0/images/aliases/$1" 2>/dev/null || true; } | jq -r '.target // empty'
}

# Point ALIAS at FINGERPRINT, deleting the image the alias pointed at before (if it has no other
# alias). Used after an import without alias so that the old image serves until the swap.
swap_alias() {
    local alias="$1" fingerprint="$2" old
    old="$(full_fingerprint "$alias")"
    if [[ -n "$old" ]]; then
        timeout 30 lxc image alias delete "$alias"
    fi
    timeout 30 lxc image alias create "$alias" "$fingerprint"
    if [[ -n "$old" && "$old" != "$fingerprint" ]]; then
        if [[ "$(timeout 30 lxc query "/1.0/images/$old" | jq '.aliases | length')" == "0" ]]; then
            timeout 120 lxc image delete "$old" || log "could not delete old image $old"
        fi
    fi
}

# ============================================================================================
# Test container image (offline, Debian)
# ============================================================================================
build_test_image() {
    ALIAS="${ALIAS:-github-runner-test}"
    if ! command -v mmdebstrap >/dev/null; then
        log "installing mmdebstrap"
        if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
            timeout 300 apt-get update -q
        fi
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q \
            --no-install-recommends mmdebstrap >/dev/null
    fi
    command -v jq >/dev/null || DEBIAN_FRONTEND=noninteractive timeout 600 \
        apt-get install -y -q --no-install-recommends jq >/dev/null

    mkdir -p "$CACHE_DIR"
    # One build at a time per cache (the cache files and the alias swap are shared).
    exec 9>"$CACHE_DIR/.build.lock"
    flock -w 1800 9 || die "another build holds $CACHE_DIR/.build.lock"
    local arch lxd_arch
    arch="$(dpkg --print-architecture)"
    lxd_arch="$(uname -m)"

    # The customisation applied inside the bootstrap (part of the cache key).
    local customize
    # shellcheck disable=SC2016 # expanded by mmdebstrap's sh, not here
    customize='set -e
root="$1"
chroot "$root" useradd --create-home --uid 1000 --user-group --shell /bin/bash ubuntu
printf "ubuntu ALL=(ALL) NOPASSWD:ALL\n" > "$root/etc/sudoers.d/90-ubuntu"
chmod 0440 "$root/etc/sudoers.d/90-ubuntu"
# Each instance gets its own machine-id and hostname (LXD templates, see metadata.yaml).
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# No timers or services that touch the network or fail without it.
for unit in apt-daily.timer apt-daily-upgrade.timer systemd-binfmt.service \
    systemd-networkd-wait-online.service e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer man-db.timer dpkg-db-backup.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
printf "127.0.0.1 localhost\n" > "$root/etc/hosts"
# redsocks runs only for experimental-use-aproxy (the runner files start it); the directories
# the runner files for docker (proxy, registry mirror) go to, even without docker.
rm -f "$root/etc/systemd/system/multi-user.target.wants/redsocks.service"
mkdir -p "$root/etc/docker" "$root/etc/systemd/system/docker.service.d" \
    "$root/home/ubuntu/.docker"
chroot "$root" chown ubuntu:ubuntu /home/ubuntu/.docker
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*_Packages* || true'
    # The network, for instances that have a NIC (part of the cache key too). systemd-networkd
    # (already in the image with systemd) asks DHCP for IPv4 on eth0/en*; no IPv6 link-local,
    # no router advertisements (the test network is IPv4 only). Nothing waits for the network:
    # systemd-networkd-wait-online stays masked, so an instance without a NIC boots as before.
    # DNS without systemd-resolved: a path unit watches networkd's lease files and a small hook
    # writes the lease's DNS servers and domain into /etc/resolv.conf. The resolv.conf of the
    # build host is never kept in the image.
    # shellcheck disable=SC2016 # expanded by mmdebstrap's sh, not here
    customize+='
root="$1"
: > "$root/etc/resolv.conf"
mkdir -p "$root/etc/systemd/network" "$root/etc/systemd/system/multi-user.target.wants" \
    "$root/etc/systemd/system/sockets.target.wants" "$root/usr/local/sbin"
cat > "$root/etc/systemd/network/50-github-runner-dhcp.network" <<"UNIT_EOF"
[Match]
Name=eth0 en*

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
UseDomains=yes
UNIT_EOF
# networkd configures a link once udev has seen it, so udev runs too; in a container only network
# devices matter, so its coldplug trigger is limited to them (the rest is refused there anyway).
mkdir -p "$root/etc/systemd/system/systemd-udev-trigger.service.d"
cat > "$root/etc/systemd/system/systemd-udev-trigger.service.d/net-only.conf" <<"UNIT_EOF"
[Service]
ExecStart=
ExecStart=-udevadm trigger --type=devices --subsystem-match=net --action=add
UNIT_EOF
ln -sf /lib/systemd/system/systemd-networkd.service \
    "$root/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
ln -sf /lib/systemd/system/systemd-networkd.service \
    "$root/etc/systemd/system/dbus-org.freedesktop.network1.service"
ln -sf /lib/systemd/system/systemd-networkd.socket \
    "$root/etc/systemd/system/sockets.target.wants/systemd-networkd.socket"
cat > "$root/usr/local/sbin/github-runner-resolv" <<"HOOK_EOF"
#!/bin/sh
# /etc/resolv.conf from the DNS servers and domain of systemd-networkd DHCP leases.
set -eu
leases=/run/systemd/netif/leases
servers=$(cat "$leases"/* 2>/dev/null | sed -n "s/^DNS=//p" | tr " " "\n" | awk "NF && !seen[\$0]++")
[ -n "$servers" ] || exit 0
domain=$(cat "$leases"/* 2>/dev/null | sed -n "s/^DOMAINNAME=//p" | head -n1)
{
    echo "# written by github-runner-resolv from the DHCP lease"
    for server in $servers; do echo "nameserver $server"; done
    if [ -n "$domain" ]; then echo "search $domain"; fi
} > /etc/resolv.conf.new
mv /etc/resolv.conf.new /etc/resolv.conf
HOOK_EOF
chmod 0755 "$root/usr/local/sbin/github-runner-resolv"
cat > "$root/etc/systemd/system/github-runner-resolv.path" <<"UNIT_EOF"
[Unit]
Description=Watch the DHCP leases for DNS servers

[Path]
PathChanged=/run/systemd/netif/leases
Unit=github-runner-resolv.service

[Install]
WantedBy=multi-user.target
UNIT_EOF
cat > "$root/etc/systemd/system/github-runner-resolv.service" <<"UNIT_EOF"
[Unit]
Description=DNS servers from the DHCP lease into /etc/resolv.conf

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/github-runner-resolv
UNIT_EOF
ln -sf ../github-runner-resolv.path \
    "$root/etc/systemd/system/multi-user.target.wants/github-runner-resolv.path"'

    local key rootfs
    key="$(printf '%s\n' "$SCRIPT_VERSION" "$SUITE" "$MIRROR" "$arch" "$TEST_PACKAGES" \
        "$customize" | sha256sum | cut -c1-16)"
    rootfs="$CACHE_DIR/rootfs-$SUITE-$key.tar"

    if [[ -f "$rootfs" && $FORCE -eq 0 ]]; then
        log "using cached rootfs $rootfs"
    else
        log "bootstrapping Debian $SUITE ($TEST_PACKAGES) from $MIRROR"
        timeout 1200 mmdebstrap --quiet --variant=minbase --include="$TEST_PACKAGES" \
            --customize-hook="$customize" \
            "$SUITE" "${rootfs%.tar}.partial.tar" "$MIRROR" \
            || { rm -f "${rootfs%.tar}.partial.tar"; die "mmdebstrap failed"; }
        mv "${rootfs%.tar}.partial.tar" "$rootfs"
        # Keep only the current cache entry.
        find "$CACHE_DIR" -maxdepth 1 -name "rootfs-$SUITE-*.tar" ! -name "$(basename "$rootfs")" \
            -delete
    fi

    local work
    work="$(mktemp -d /tmp/github-runner-image.XXXXXX)"
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT

    local image_rootfs="$rootfs" runner_sha="" runner_version=""
    if [[ -n "$RUNNER_BINARY" ]]; then
        runner_sha="$(sha256sum "$RUNNER_BINARY" | cut -d' ' -f1)"
        local cached_with_runner="$CACHE_DIR/rootfs-$SUITE-$key-runner-${runner_sha:0:16}.tar"
        if [[ ! -f "$cached_with_runner" || $FORCE -eq 1 ]]; then
            log "baking runner $RUNNER_BINARY into /home/ubuntu/actions-runner"
            mkdir -p "$work/runner/home/ubuntu/actions-runner"
            tar -xzf "$RUNNER_BINARY" -C "$work/runner/home/ubuntu/actions-runner"
            cp "$rootfs" "${cached_with_runner%.tar}.partial.tar"
            tar -rf "${cached_with_runner%.tar}.partial.tar" -C "$work/runner" --numeric-owner \
                --owner=1000 --group=1000 home/ubuntu/actions-runner
            mv "${cached_with_runner%.tar}.partial.tar" "$cached_with_runner"
            find "$CACHE_DIR" -maxdepth 1 -name "rootfs-$SUITE-*-runner-*.tar" \
                ! -name "$(basename "$cached_with_runner")" -delete
        fi
        image_rootfs="$cached_with_runner"
        runner_version="$(tar -xzOf "$RUNNER_BINARY" ./.runner-version 2>/dev/null \
            || tar -xzOf "$RUNNER_BINARY" .runner-version 2>/dev/null || true)"
        runner_version="$(echo "$runner_version" | head -n1 | tr -cd '[:alnum:]._-')"
    fi

    # Deterministic metadata tarball: same inputs -> same fingerprint -> nothing to do.
    local creation_date
    creation_date="$(stat -c %Y "$image_rootfs")"
    mkdir -p "$work/meta/templates"
    cat >"$work/meta/metadata.yaml" <<EOF
architecture: $lxd_arch
creation_date: $creation_date
properties:
  os: debian
  release: $SUITE
  architecture: $arch
  description: github-runner test container image (Debian $SUITE, build $key)
  github-runner.kind: test
  github-runner.build: "$key"
  github-runner.runner-sha256: "$runner_sha"
  github-runner.runner-version: "$runner_version"
templates:
  /etc/hostname:
    when: [create, copy]
    create_only: false
    template: hostname.tpl
  /etc/hosts:
    when: [create, copy]
    create_only: false
    template: hosts.tpl
EOF
    printf '{{ container.name }}\n' >"$work/meta/templates/hostname.tpl"
    printf '127.0.0.1 localhost\n127.0.1.1 {{ container.name }}\n::1 localhost\n' \
        >"$work/meta/templates/hosts.tpl"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/meta" -cf - \
        metadata.yaml templates | gzip -n >"$work/meta.tar.gz"

    local fingerprint current
    fingerprint="$(cat "$work/meta.tar.gz" "$image_rootfs" | sha256sum | cut -d' ' -f1)"
    current="$(full_fingerprint "$ALIAS")"
    if [[ "$current" == "$fingerprint" && $FORCE -eq 0 ]]; then
        log "nothing to do: $ALIAS is already image ${fingerprint:0:12} ($(elapsed) s)"
        return 0
    fi

    if timeout 30 lxc query "/1.0/images/$fingerprint" >/dev/null 2>&1; then
        log "image ${fingerprint:0:12} already imported; pointing $ALIAS at it"
    else
        log "importing image ${fingerprint:0:12}"
        timeout 600 lxc image import "$work/meta.tar.gz" "$image_rootfs" >/dev/null
    fi
    swap_alias "$ALIAS" "$fingerprint"
    log "done: $ALIAS -> ${fingerprint:0:12} ($(elapsed) s)"
}

# ============================================================================================
# Production VM image (Ubuntu, needs an image server and VM support)
# ============================================================================================
build_vm_image() {
    case "$BASE" in
        jammy|noble) ;;
        *) die "--base must be jammy or noble (got $BASE)" ;;
    esac
    ALIAS="${ALIAS:-github-runner-$BASE}"
    local source="$REMOTE:$BASE"
    local builder
    builder="github-runner-builder-$BASE-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"

    # Fail early and clearly when what this path needs is missing.
    timeout 10 lxc remote list -f csv | cut -d, -f1 | sed 's/ (.*)//' | grep -qx "$REMOTE" \
        || die "LXD remote '$REMOTE' is not configured (lxc remote add $REMOTE \
https://cloud-images.ubuntu.com/releases --protocol simplestreams); use --test offline"
    timeout 60 lxc image info "$source" >/dev/null 2>&1 \
        || die "cannot reach image $source (no network to the image server?). The VM image \
needs https://cloud-images.ubuntu.com; for an offline container image use --test"
    timeout 10 lxc query /1.0 | jq -e '.environment.driver | test("qemu")' >/dev/null \
        || die "this LXD cannot run virtual machines (no qemu driver); use --test"
    timeout 10 lxc network show "$NETWORK" >/dev/null 2>&1 \
        || die "LXD network '$NETWORK' does not exist; the builder VM needs one (--network)"

    cleanup_builder() { timeout 120 lxc delete --force "$builder" >/dev/null 2>&1 || true; }
    trap cleanup_builder EXIT

    log "launching builder VM $builder from $source"
    timeout 600 lxc init "$source" "$builder" --vm -c limits.cpu=2 -c limits.memory=4GiB \
        -c security.secureboot=false
    timeout 60 lxc config device add "$builder" eth0 nic network="$NETWORK" name=eth0 >/dev/null
    timeout 300 lxc start "$builder"

    # Wait for the agent (bounded, polling with backoff), then for cloud-init.
    local deadline=$(( $(date +%s) + 300 )) delay=0.2
    until timeout 10 lxc exec "$builder" -- true >/dev/null 2>&1; do
        (( $(date +%s) < deadline )) || die "the builder VM's agent did not answer in 300 s"
        sleep "$delay"
        delay="$(awk -v d="$delay" 'BEGIN { d *= 2; if (d > 5) d = 5; print d }')"
    done
    timeout 900 lxc exec "$builder" -- cloud-init status --wait >/dev/null || true

    log "installing packages: ${VM_PACKAGES[*]}"
    timeout 3600 lxc exec "$builder" --env DEBIAN_FRONTEND=noninteractive -- bash -euo pipefail -c "
        apt-get update -q
        apt-get purge -y -q unattended-upgrades
        apt-get upgrade -y -q
        apt-get install -y -q --no-install-recommends ${VM_PACKAGES[*]}
        npm install --global yarn
        snap install yq || { \
            curl -fsSL -o /usr/local/bin/yq \
            https://github.com/mikefarah/yq/releases/latest/download/yq_linux_amd64 \
            && chmod 0755 /usr/local/bin/yq; }
        systemctl mask apt-daily.timer apt-daily-upgrade.timer apt-daily.service \
            apt-daily-upgrade.service
        id ubuntu >/dev/null 2>&1 || useradd --create-home --uid 1000 --shell /bin/bash ubuntu
        usermod -aG docker ubuntu
        # redsocks runs only for experimental-use-aproxy; the runner files' directories.
        systemctl disable redsocks.service
        mkdir -p /etc/docker /etc/systemd/system/docker.service.d /home/ubuntu/.docker
        chown ubuntu:ubuntu /home/ubuntu/.docker
        printf 'ubuntu ALL=(ALL) NOPASSWD:ALL\n' > /etc/sudoers.d/90-ubuntu
        chmod 0440 /etc/sudoers.d/90-ubuntu
        # Inotify limits docker-heavy jobs run into.
        printf 'fs.inotify.max_user_watches=655360\nfs.inotify.max_user_instances=1280\n' \
            > /etc/sysctl.d/60-github-runner.conf
    "

    if [[ -n "$RUNNER_BINARY" ]]; then
        log "baking runner $RUNNER_BINARY into /home/ubuntu/actions-runner"
        timeout 300 lxc file push "$RUNNER_BINARY" "$builder/tmp/actions-runner.tar.gz"
        timeout 300 lxc exec "$builder" -- bash -euo pipefail -c '
            mkdir -p /home/ubuntu/actions-runner
            tar -xzf /tmp/actions-runner.tar.gz -C /home/ubuntu/actions-runner
            rm -f /tmp/actions-runner.tar.gz
            chown -R ubuntu:ubuntu /home/ubuntu/actions-runner'
    fi

    log "cleaning up the builder"
    timeout 600 lxc exec "$builder" -- bash -euo pipefail -c '
        apt-get clean
        rm -rf /var/lib/apt/lists/*
        cloud-init clean --logs --machine-id || { truncate -s 0 /etc/machine-id; }
        sync'
    timeout 300 lxc stop "$builder"
    timeout 60 lxc config device remove "$builder" eth0 >/dev/null

    log "publishing $builder as $ALIAS"
    local fingerprint
    fingerprint="$(timeout 3600 lxc publish "$builder" --compression none 2>&1 \
        | sed -n 's/.*fingerprint: \([0-9a-f]*\).*/\1/p')"
    [[ -n "$fingerprint" ]] || die "lxc publish did not report a fingerprint"
    swap_alias "$ALIAS" "$fingerprint"
    log "done: $ALIAS -> ${fingerprint:0:12} ($(elapsed) s)"
}

if [[ $TEST -eq 1 ]]; then
    build_test_image
else
    build_vm_image
fi
