#!/usr/bin/env bash
# Installs what the sandbox driver and its tests need, from Debian's packages, when it
# is missing: the OCI runtime (runc), image tools (umoci, skopeo), a registry for tests
# (docker-registry), busybox for test images, tini (the machines' init), nftables,
# iproute2 and util-linux.
set -euo pipefail
needed=()
for pair in runc:runc umoci:umoci skopeo:skopeo docker-registry:docker-registry \
    busybox:busybox-static tini-static:tini nft:nftables ip:iproute2 nsenter:util-linux strip:binutils; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || needed+=("${pair#*:}")
done
[ -x /bin/busybox ] || needed+=(busybox-static)
if [ ${#needed[@]} -eq 0 ]; then
    exit 0
fi
echo "installing: ${needed[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (or install them yourself): apt-get install ${needed[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
# The Debian registry package starts a service on :5000; tests start their own.
systemctl disable --now docker-registry >/dev/null 2>&1 || true
