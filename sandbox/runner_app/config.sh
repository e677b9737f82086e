#!/bin/bash
# Configure (register) or remove this runner. Emulates actions/runner's config.sh.
set -e
RUNNER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$(id -u)" -eq 0 ] && [ -z "${RUNNER_ALLOW_RUNASROOT:-}" ]; then
    echo "Must not run with sudo" >&2
    exit 1
fi
if [ "${1:-}" = "remove" ]; then
    shift
    exec "$RUNNER_DIR/bin/Runner.Listener" remove "$@"
fi
exec "$RUNNER_DIR/bin/Runner.Listener" configure "$@"
