#!/bin/bash
# Run this runner: take jobs until an ephemeral runner has run one. Emulates actions/runner's run.sh.
set -e
RUNNER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$RUNNER_DIR/bin/Runner.Listener" run "$@"
