#!/usr/bin/env bash
# Install Debian's `prometheus` package (prometheus + promtool) for the Prometheus tests
# (tests/integration/test_prometheus_rules.py, test_prometheus_scrape.py). Idempotent; run as
# root. Nothing is left running: the package's own service is kept from starting (it would
# listen on every address), and each test starts its own server on 127.0.0.1 with its own
# configuration and data directory, then stops it.
set -euo pipefail

log() { echo "setup-prometheus: $*"; }

if [[ $EUID -ne 0 ]]; then
    echo "setup-prometheus: must run as root" >&2
    exit 1
fi

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    log "prometheus and promtool present: $(prometheus --version 2>&1 | head -1)"
    exit 0
fi

# Keep maintainer scripts from starting the packaged service (no systemd here; its init script
# would start a server on 0.0.0.0:9090): a policy-rc.d that refuses, removed afterwards.
policy=/usr/sbin/policy-rc.d
ours=""
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    ours=1
fi
cleanup() { [[ -n $ours ]] && rm -f "$policy"; return 0; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show prometheus >/dev/null 2>&1; then
    apt-get update -q
fi
log "installing prometheus (Debian package, no recommends)"
apt-get install -y -q --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null || { echo "setup-prometheus: promtool missing" >&2; exit 1; }
log "installed: $(prometheus --version 2>&1 | head -1)"
