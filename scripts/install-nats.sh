#!/usr/bin/env bash
# Installs nats-server from Debian's packages when it is missing: the cluster tests
# start three of them as one JetStream cluster on loopback (Debian ships 2.9.x, and
# edgewake uses nothing newer). The package may start a system service on :4222;
# the tests start their own on free ports, so it is stopped.
set -euo pipefail
if command -v nats-server >/dev/null 2>&1; then
    exit 0
fi
echo "installing: nats-server"
if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (or install it yourself): apt-get install nats-server" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends nats-server >/dev/null
systemctl disable --now nats-server >/dev/null 2>&1 || true
