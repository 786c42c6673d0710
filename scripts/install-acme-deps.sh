#!/usr/bin/env bash
# Installs what the ACME tests need, from Debian's packages, when it is missing:
# Pebble, Let's Encrypt's test CA, with pebble-challtestsrv (the tests' DNS). The tests
# start both themselves on loopback; nothing here runs them.
set -euo pipefail
if command -v pebble >/dev/null 2>&1 && command -v pebble-challtestsrv >/dev/null 2>&1; then
    exit 0
fi
echo "installing: pebble"
if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (or install it yourself): apt-get install pebble" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends pebble >/dev/null
