#!/usr/bin/env bash
# What Fly's forwarding headers cost the machine. Usage: bash benches/contract-cost.sh
# [ROUNDS] [SECONDS]
#
# edgewake sends every request with the fields Fly's proxy sends (X-Forwarded-For, -Proto,
# -Ssl, -Port, -Host, Fly-Client-IP, Fly-Forwarded-Port, Fly-Region, Via); the peers'
# configs in shared/bench/peers.sh send one (X-Forwarded-For). The machine parses every
# field, so behind edgewake it works more per request, on a core load.sh's proxies share
# with it. This script measures that alone, with no proxy: the bundled runtime
# (`edgewake functions`, what the benchmark's machine runs) on CPU 0, wrk on CPU 1, the
# same 12-byte answer, in alternating runs: the head a peer sends, then edgewake's.
# It prints the machine's CPU per request (user + system) and its requests/s.
set -euo pipefail
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/common.sh
source "$ROOT/benches/common.sh"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
edgewake_bin

PORT=$(free_port)
PORT=$PORT HOST=127.0.0.1 taskset -c 0 "$BIN" functions >/dev/null 2>&1 &
MACHINE=$!
trap 'kill $MACHINE 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.05; done

HOST=app.localhost
PEER=(-H "X-Forwarded-For: 127.0.0.1")
FLY=(-H "X-Forwarded-For: 127.0.0.1" -H "X-Forwarded-Proto: http" -H "X-Forwarded-Ssl: off"
  -H "X-Forwarded-Port: 80" -H "X-Forwarded-Host: $HOST" -H "Fly-Client-IP: 127.0.0.1"
  -H "Fly-Forwarded-Port: 80" -H "Fly-Region: ams" -H "Via: 1.1 edgewake")
ticks() { awk '{print $14 + $15}' "/proc/$MACHINE/stat"; }
HZ=$(getconf CLK_TCK)

printf "%-6s %-10s %10s %12s\n" round head rps machine_us
for round in $(seq "$ROUNDS"); do
  for head in peers edgewake; do
    if [ "$head" = peers ]; then fields=("${PEER[@]}"); else fields=("${FLY[@]}"); fi
    before=$(ticks)
    out=$(taskset -c 1 wrk -t1 -c64 -d"${SECONDS_PER_RUN}s" -H "Host: $HOST" "${fields[@]}" \
      "http://127.0.0.1:$PORT/?bytes=12")
    after=$(ticks)
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    echo "$round $head $requests $before $after" | awk -v hz="$HZ" -v s="$SECONDS_PER_RUN" '{
      printf "%-6s %-10s %10d %12.2f\n", $1, $2, $3 / s, ($5 - $4) / hz / $3 * 1e6 }'
  done
done
