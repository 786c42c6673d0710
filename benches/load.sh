#!/usr/bin/env bash
# Load benchmark: edgewake next to nginx and HAProxy, same machine backend, same client,
# interleaved rounds, one table. Usage: bash benches/load.sh [ROUNDS] [SECONDS]
# EDGEWAKE_WORKERS=N runs edgewake with N tokio workers, unpinned (scaling); default 1,
# pinned like the peers. EDGEWAKE_BIN=path benchmarks that binary (no build); PEERS=path
# names shared/bench/peers.sh when it is not found beside the checkout.
#
# - builds edgewake (release), starts it on free loopback ports with its own data dir,
#   creates an app and a machine of the bundled runtime with autostop off;
# - starts nginx and HAProxy (one worker each, upstream keep-alive) in front of the same
#   machine, using ../shared/bench/peers.sh when present, else an equivalent config;
# - pins every proxy (edgewake with one tokio worker) to CPU 0 and wrk to CPU 1; the
#   machine itself is not pinned;
# - runs wrk rounds over: direct (the ceiling), edgewake, nginx, HAProxy: HTTP keep-alive
#   at 64 and 256 connections, HTTPS keep-alive, HTTPS with a new connection per request;
# - prints medians (rps, p50, p99) and ratios, and writes them to target/bench/.
set -euo pipefail
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/edgewake-bench.XXXXXX)
OUT_DIR="$ROOT/target/bench"
mkdir -p "$OUT_DIR"
OUT="$OUT_DIR/load-$(date -u +%Y%m%dT%H%M%SZ).txt"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx || ! need haproxy || ! need taskset; then
  echo "installing wrk, nginx-light, haproxy (Debian packages)..." >&2
  apt-get update -qq && apt-get install -y -qq wrk nginx-light haproxy util-linux >/dev/null
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(free_port); HTTPS=$(free_port); API=$(free_port)
TOKEN=bench-$$
HOST=bench.localhost

cleanup() {
  [ -n "${EDGEWAKE_PID:-}" ] && kill "$EDGEWAKE_PID" 2>/dev/null && wait "$EDGEWAKE_PID" 2>/dev/null || true
  [ -n "${PEERS:-}" ] && PEER_DIR="$WORK/peer" bash "$PEERS" stop 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# EDGEWAKE_BIN=path runs that binary instead of building this checkout (a before/after
# comparison on one machine).
if [ -n "${EDGEWAKE_BIN:-}" ]; then
  BIN=$EDGEWAKE_BIN
else
  (cd "$ROOT" && cargo build --release --quiet)
  BIN="$ROOT/target/release/edgewake"
fi
"$BIN" certs generate "$HOST" --dir "$WORK/certs" >/dev/null
cat >"$WORK/edgewake.toml" <<EOF
data_dir = "$WORK/data"
[edge]
region = "ams"
idle_timeout = "1h"
[tls]
certs_dir = "$WORK/certs"
[machines]
private_ip_range = "127.77.0.0/24"
[[regions]]
code = "ams"
latitude = 52.374
longitude = 4.890
[images."flyio/fastify-functions"]
command = ["{bin_dir}/edgewake", "functions"]
EOF
WORKERS=${EDGEWAKE_WORKERS:-1}
EDGEWAKE_API_TOKEN=$TOKEN RUST_LOG=warn TOKIO_WORKER_THREADS=$WORKERS "$BIN" serve --config "$WORK/edgewake.toml" \
  --http "127.0.0.1:$HTTP" --https "127.0.0.1:$HTTPS" --api "127.0.0.1:$API" 2>"$WORK/edgewake.log" &
EDGEWAKE_PID=$!
api() { curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API/v1$1" "${@:2}"; }
for _ in $(seq 100); do api /apps >/dev/null 2>&1 && break; sleep 0.05; done
api /apps -X POST -d '{"app_name":"bench","org_slug":"personal"}' >/dev/null
MACHINE=$(api /apps/bench/machines -X POST -d '{"config":{"image":"flyio/fastify-functions","services":[
  {"protocol":"tcp","internal_port":8080,"autostop":false,
   "ports":[{"port":80,"handlers":["http"]},{"port":443,"handlers":["tls","http"]}]}]}}')
IP=$(echo "$MACHINE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["private_ip"])')
for _ in $(seq 200); do curl -sf -o /dev/null -H "Host: $HOST" "http://127.0.0.1:$HTTP/" && break; sleep 0.05; done
[ "$WORKERS" = 1 ] && taskset -apc 0 "$EDGEWAKE_PID" >/dev/null

# The peers' configs: $PEERS if set, else shared/bench/peers.sh beside the checkout (a
# worktree under /work/wt finds it two levels up).
for candidate in "${PEERS:-}" "$ROOT/../shared/bench/peers.sh" "$ROOT/../../shared/bench/peers.sh"; do
  [ -n "$candidate" ] && [ -f "$candidate" ] && PEERS=$candidate && break
done
[ -f "${PEERS:-}" ] || { echo "no peers.sh: set PEERS=/path/to/shared/bench/peers.sh" >&2; exit 1; }
PEER_DIR="$WORK/peer" BACKEND="$IP:8080" bash "$PEERS" start
for pidfile in "$WORK/peer/nginx.pid" "$WORK/peer/haproxy.pid"; do
  for pid in $(cat "$pidfile") $(pgrep -P "$(cat "$pidfile")" || true); do taskset -apc 0 "$pid" >/dev/null; done
done

# One wrk run; prints "rps p50_ms p99_ms".
run() {
  local url=$1; shift
  taskset -c 1 wrk -t1 -d"${SECONDS_PER_RUN}s" --latency -H "Host: $HOST" "$@" "$url" 2>/dev/null | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ {rps=$2} / 50%/ {p50=ms($2)} / 99%/ {p99=ms($2)}
    END {printf "%.0f %.3f %.3f\n", rps, p50, p99}'
}

declare -A RESULTS
SCENARIOS=("http-64" "http-256" "https-64" "https-newconn")
TARGETS=("direct" "edgewake" "nginx" "haproxy")
url_for() {
  case "$1:$2" in
    direct:https*) echo "" ;;  # the machine speaks plain HTTP only
    direct:http*) echo "http://$IP:8080/" ;;
    edgewake:http-*) echo "http://127.0.0.1:$HTTP/" ;;
    edgewake:https*) echo "https://127.0.0.1:$HTTPS/" ;;
    nginx:http-*) echo "http://127.0.0.1:18081/" ;;
    nginx:https*) echo "https://127.0.0.1:18443/" ;;
    haproxy:http-*) echo "http://127.0.0.1:18082/" ;;
    haproxy:https*) echo "" ;;  # peers.sh gives HAProxy no TLS listener
  esac
}
args_for() {
  case "$1" in
    http-64|https-64) echo "-c64" ;;
    http-256) echo "-c256" ;;
    https-newconn) echo "-c16 -H Connection:close" ;;
  esac
}
# PROFILE=1: instead of the rounds, sample edgewake's user-space CPU (perf, 4 kHz) over one
# HTTP keep-alive run at 64 connections and print the top symbols.
if [ "${PROFILE:-0}" = 1 ]; then
  need perf || { apt-get install -y -qq linux-perf >/dev/null; }
  perf record -q -F 4000 -e cpu-clock:u ${PERF_ARGS:-} -p "$EDGEWAKE_PID" -o "$WORK/perf.data" &
  PERF=$!
  sleep 0.2
  taskset -c 1 wrk -t1 -c64 -d"${SECONDS_PER_RUN}s" -H "Host: $HOST" "$(url_for edgewake http-64)" >/dev/null
  kill -INT "$PERF"; wait "$PERF" 2>/dev/null || true
  perf report -q -i "$WORK/perf.data" --no-children --sort symbol ${REPORT_ARGS:-} 2>/dev/null | head -"${TOP:-40}"
  exit 0
fi

# SYSCALLS=1: instead of the rounds, measure each proxy's CPU (user, system) and system
# calls (perf tracepoints) per request, over one keep-alive run at 64 connections (HTTP
# for all three, HTTPS for edgewake and nginx).
if [ "${SYSCALLS:-0}" = 1 ]; then
  need perf || { apt-get install -y -qq linux-perf >/dev/null; }
  pids_of() {
    case "$1" in
      edgewake) echo "$EDGEWAKE_PID" ;;
      nginx) pgrep -P "$(cat "$WORK/peer/nginx.pid")" | paste -sd, ;;
      haproxy) cat "$WORK/peer/haproxy.pid" ;;
    esac
  }
  # Summed user and system clock ticks of the comma-separated pids (and their threads).
  cpu_ticks() {
    local user=0 sys=0
    for pid in ${1//,/ }; do
      read -r u s < <(awk '{print $14, $15}' "/proc/$pid/stat")
      user=$((user + u)); sys=$((sys + s))
    done
    echo "$user $sys"
  }
  events=raw_syscalls:sys_enter
  for call in read recvfrom readv write sendto writev epoll_wait epoll_pwait epoll_ctl futex; do
    events="$events,syscalls:sys_enter_$call"
  done
  for run in edgewake:http-64 nginx:http-64 haproxy:http-64 edgewake:https-64 nginx:https-64; do
    target=${run%%:*}; scenario=${run#*:}
    url=$(url_for "$target" "$scenario")
    perf stat -x, -e "$events" -p "$(pids_of "$target")" -o "$WORK/perf-$target.txt" &
    PERF=$!
    sleep 0.2
    before=$(cpu_ticks "$(pids_of "$target")")
    requests=$(taskset -c 1 wrk -t1 -c64 -d"${SECONDS_PER_RUN}s" -H "Host: $HOST" "$url" | awk '/requests in/ {print $1}')
    after=$(cpu_ticks "$(pids_of "$target")")
    kill -INT "$PERF"; wait "$PERF" 2>/dev/null || true
    echo "$target $scenario: $requests requests; CPU per request (user, system): $(echo "$before $after" | awk -v n="$requests" -v hz="$(getconf CLK_TCK)" \
      '{printf "%.2f us, %.2f us", ($3-$1)/hz/n*1e6, ($4-$2)/hz/n*1e6}'); system calls per request:"
    awk -F, -v n="$requests" '$3 ~ /sys_enter/ && $1+0 > 0 {
      name=$3; sub(/.*sys_enter_?/, "", name); if (name == "") name = "all";
      printf "  %-12s %6.2f\n", name, $1 / n }' "$WORK/perf-$target.txt"
  done
  exit 0
fi

for round in $(seq "$ROUNDS"); do
  for scenario in "${SCENARIOS[@]}"; do
    for target in "${TARGETS[@]}"; do
      url=$(url_for "$target" "$scenario"); [ -n "$url" ] || continue
      # shellcheck disable=SC2046
      RESULTS["$scenario/$target/$round"]=$(run "$url" $(args_for "$scenario"))
      echo "round $round $scenario $target: ${RESULTS["$scenario/$target/$round"]}" >&2
    done
  done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
{
  echo "edgewake load benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  echo "wrk -t1 ${SECONDS_PER_RUN}s x $ROUNDS rounds (medians); peers on CPU 0, wrk on CPU 1; edgewake: $WORKERS tokio worker(s)$([ "$WORKERS" = 1 ] && echo ', CPU 0' || echo ', unpinned')"
  printf "%-14s %-9s %10s %9s %9s\n" scenario target rps p50_ms p99_ms
  for scenario in "${SCENARIOS[@]}"; do
    for target in "${TARGETS[@]}"; do
      [ -n "${RESULTS["$scenario/$target/1"]:-}" ] || continue
      col() { for r in $(seq "$ROUNDS"); do echo "${RESULTS["$scenario/$target/$r"]}" | cut -d' ' -f"$1"; done | median; }
      printf "%-14s %-9s %10.0f %9.3f %9.3f\n" "$scenario" "$target" "$(col 1)" "$(col 2)" "$(col 3)"
      RESULTS["$scenario/$target/median"]=$(col 1)
    done
  done
  echo "ratios (rps):"
  for scenario in "${SCENARIOS[@]}"; do
    e=${RESULTS["$scenario/edgewake/median"]:-}
    for peer in haproxy nginx direct; do
      p=${RESULTS["$scenario/$peer/median"]:-}
      if [ -n "$e" ] && [ -n "$p" ]; then
        printf "  %-14s edgewake/%-8s %.2f\n" "$scenario" "$peer" "$(echo "$e / $p" | bc -l)"
      fi
    done
  done
} | tee "$OUT"
echo "written to $OUT" >&2
