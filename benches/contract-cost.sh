#!/usr/bin/env bash
# What Fly's forwarding headers cost the machine. Usage: bash benches/contract-cost.sh
# [ROUNDS] [SECONDS]
#
# edgewake sends every request with the eight fields of Fly's contract (X-Forwarded-For,
# -Proto, -Ssl, -Port, Fly-Client-IP, Fly-Forwarded-Port, Fly-Region, Via) and its own
# X-Forwarded-Host, names in lower case as it writes them; the peers' configs in
# shared/bench/peers.sh send one (X-Forwarded-For). The machine parses every
# field, so behind edgewake it works more per request: CPU the proxies' core loses when
# the machine shares it (load.sh, SHARED_CORE=1), or the client's when it runs beside
# wrk (the default, unpinned). This script measures that alone, with no proxy: the
# bundled runtime (`edgewake functions`, what the benchmark's machine runs) on CPU 0, wrk
# on CPU 1, the same 12-byte answer, after a warm-up run, in runs that alternate which
# head goes first: the head a peer sends and edgewake's.
# It prints the machine's CPU per request (user + system) and its requests/s.
set -euo pipefail
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/common.sh
source "$ROOT/benches/common.sh"
for tool in wrk taskset curl python3; do
  command -v "$tool" >/dev/null && continue
  apt-get update -qq && apt-get install -y -qq wrk util-linux curl python3 >/dev/null
  break
done
edgewake_bin

PORT=$(free_port)
PORT=$PORT HOST=127.0.0.1 taskset -c 0 "$BIN" functions >/dev/null 2>&1 &
MACHINE=$!
trap 'kill $MACHINE 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.05; done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" ||
  { echo "the machine does not answer on port $PORT" >&2; exit 1; }

APP_HOST=app.localhost
PEER=(-H "x-forwarded-for: 127.0.0.1")
FLY=(-H "x-forwarded-for: 127.0.0.1" -H "x-forwarded-proto: http" -H "x-forwarded-ssl: off"
  -H "x-forwarded-port: 80" -H "x-forwarded-host: $APP_HOST" -H "fly-client-ip: 127.0.0.1"
  -H "fly-forwarded-port: 80" -H "fly-region: ams" -H "via: 1.1 edgewake")
ticks() { awk '{print $14 + $15}' "/proc/$MACHINE/stat"; }
HZ=$(getconf CLK_TCK)

# One run of `$1` seconds with the head named `$2`; prints "rps machine_us".
run() {
  local fields before after out requests rps
  if [ "$2" = peers ]; then fields=("${PEER[@]}"); else fields=("${FLY[@]}"); fi
  before=$(ticks)
  out=$(taskset -c 1 wrk -t1 -c64 -d"$1s" -H "Host: $APP_HOST" "${fields[@]}" \
    "http://127.0.0.1:$PORT/?bytes=12")
  after=$(ticks)
  # A machine that answers errors fast must not look cheap.
  if echo "$out" | grep -E 'Socket errors|Non-2xx' >&2; then
    echo "wrk saw errors in the $2 run" >&2
    exit 1
  fi
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  echo "$rps $before $after $requests" | awk -v hz="$HZ" '{
    printf "%10d %12.2f\n", $1, ($3 - $2) / hz / $4 * 1e6 }'
}

run 1 edgewake >/dev/null # warm-up
printf "%-6s %-10s %10s %12s\n" round head rps machine_us
for round in $(seq "$ROUNDS"); do
  order="peers edgewake"; [ $((round % 2)) = 0 ] && order="edgewake peers"
  for head in $order; do
    result=$(run "$SECONDS_PER_RUN" "$head") # a failed run stops the script here
    printf "%-6s %-10s %s\n" "$round" "$head" "$result"
  done
done
