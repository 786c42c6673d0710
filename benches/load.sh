#!/usr/bin/env bash
# Load benchmark: edgewake next to nginx and HAProxy, same machine backend, same client,
# interleaved rounds, one table. Usage: bash benches/load.sh [ROUNDS] [SECONDS]
#
# Knobs (environment):
# - EDGEWAKE_WORKERS=N: edgewake's edge workers (one thread and runtime per core), unpinned
#   when N > 1 (scaling); default 1, pinned like the peers; 0 serves connections on the
#   main runtime (one thread, pinned). BASELINE_WORKERS=N the same for the baseline
#   (default EDGEWAKE_WORKERS): one binary against itself with and without workers.
# - EDGEWAKE_BIN=path benchmarks that binary (no build); BASELINE_BIN=path runs a second
#   edgewake (target "baseline", its own machine of the same runtime) in the same rounds,
#   for a before/after comparison that shares the machine's noise.
# - PEERS=path names shared/bench/peers.sh when it is not found beside the checkout.
# - SHARED_CORE=1 pins the machine to CPU 0 with the proxy under test (edgewake's own
#   deployment: machines run on the edge's host), instead of leaving it unpinned.
# - MACHINE_CPU=N pins the machine to CPU N (SHARED_CORE=1 is MACHINE_CPU=0; 1: with the
#   client, the proxies' tails without the machine ever taking their core).
# - SCENARIOS="http-64 ..." runs a subset of: http-64 http-256 https-64 https-newconn h2
#   (default), or http-newconn (plain HTTP, a new connection per request).
# - PROFILE=1 / SYSCALLS=1: instead of the rounds, a profile / the per-request CPU table.
# - REQUEST_PATH=/ asks the machine to echo the request (its headers as JSON: a machine
#   behind edgewake, which adds nine forwarding headers, then works more than one behind
#   the peers, which add one); the default, /?bytes=12, is a 12-byte answer like
#   peers.sh's own backend, the same work for the machine behind every proxy.
# - NGINX_TLS=debian leaves nginx on Debian's TLS 1.0-1.2 (default: TLS 1.2 and 1.3).
# - USER_AGENT="Mozilla/5.0 ..." sends that User-Agent with every request (wrk sends none,
#   browsers always do; edgewake looks for monitors and crawlers in it).
#
# - builds edgewake (release), starts it on free loopback ports with its own data dir,
#   creates an app and a machine of the bundled runtime with autostop off;
# - starts nginx and HAProxy (one worker each, upstream keep-alive) in front of the same
#   machine, using shared/bench/peers.sh;
# - pins every proxy (edgewake with one edge worker) to CPU 0 and the client to CPU 1;
# - runs rounds over: direct (the ceiling), edgewake, nginx, HAProxy: wrk for HTTP
#   keep-alive at 64 and 256 connections, HTTPS keep-alive, HTTPS with a new connection
#   per request; h2load for HTTP/2 over TLS (16 connections x 32 streams);
# - prints medians (rps, p50, p99) and ratios, and writes them to target/bench/.
set -euo pipefail
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/common.sh
source "$ROOT/benches/common.sh"
WORK=$(mktemp -d /tmp/edgewake-bench.XXXXXX)
OUT_DIR="$ROOT/target/bench"
mkdir -p "$OUT_DIR"
OUT="$OUT_DIR/load-$(date -u +%Y%m%dT%H%M%SZ).txt"
SHARED_CORE=${SHARED_CORE:-0}
[ "$SHARED_CORE" = 1 ] && MACHINE_CPU=0
WORKERS=${EDGEWAKE_WORKERS:-1}
BASELINE_WORKERS=${BASELINE_WORKERS:-$WORKERS}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

need() { command -v "$1" >/dev/null 2>&1; }
# Headers every client sends besides the host. Expanded as ${CLIENT_HEADERS[@]+...}:
# an empty array's "${CLIENT_HEADERS[@]}" fails under `set -u` before bash 4.4.
CLIENT_HEADERS=()
[ -n "${USER_AGENT:-}" ] && CLIENT_HEADERS=(-H "User-Agent: $USER_AGENT")
if ! need wrk || ! need nginx || ! need haproxy || ! need taskset || ! need h2load; then
  echo "installing wrk, nginx-light, haproxy, nghttp2-client (Debian packages)..." >&2
  apt-get update -qq && apt-get install -y -qq wrk nginx-light haproxy util-linux nghttp2-client >/dev/null
fi

TOKEN=bench-$$
HOST=bench.localhost
declare -A PID HTTP_PORT HTTPS_PORT MACHINE_IP

cleanup() {
  for name in "${!PID[@]}"; do
    kill "${PID[$name]}" 2>/dev/null && wait "${PID[$name]}" 2>/dev/null || true
  done
  [ -n "${PEERS:-}" ] && PEER_DIR="$WORK/peer" bash "$PEERS" stop 2>/dev/null || true
  [ -n "${KEEP_WORK:-}" ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

edgewake_bin

# Every process under `pid` (the machines edgewake started), one a line.
descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do echo "$child"; descendants "$child"; done
}

# Starts an edgewake named $1 from binary $2 with machines in $3 and $4 edge workers
# (default $WORKERS), an app and one machine.
start_edgewake() {
  local name=$1 bin=$2 range=$3 workers=${4:-$WORKERS} dir="$WORK/$1"
  local http https api machine
  http=$(free_port); https=$(free_port); api=$(free_port)
  mkdir -p "$dir"
  "$bin" certs generate "$HOST" --dir "$dir/certs" >/dev/null
  cat >"$dir/edgewake.toml" <<EOF
data_dir = "$dir/data"
[edge]
region = "ams"
idle_timeout = "1h"
workers = $workers
[tls]
certs_dir = "$dir/certs"
[machines]
private_ip_range = "$range"
[[regions]]
code = "ams"
latitude = 52.374
longitude = 4.890
[images."flyio/fastify-functions"]
command = ["{bin_dir}/edgewake", "functions"]
EOF
  # A binary from before edge workers existed does not know the key.
  "$bin" check-config --config "$dir/edgewake.toml" >/dev/null 2>&1 || sed -i '/^workers = /d' "$dir/edgewake.toml"
  EDGEWAKE_API_TOKEN=$TOKEN RUST_LOG=warn TOKIO_WORKER_THREADS=$((workers > 1 ? workers : 1)) "$bin" serve --config "$dir/edgewake.toml" \
    --http "127.0.0.1:$http" --https "127.0.0.1:$https" --api "127.0.0.1:$api" 2>"$dir/edgewake.log" &
  PID[$name]=$!
  HTTP_PORT[$name]=$http; HTTPS_PORT[$name]=$https
  api() { curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$api/v1$1" "${@:2}"; }
  for _ in $(seq 100); do api /apps >/dev/null 2>&1 && break; sleep 0.05; done
  api /apps -X POST -d '{"app_name":"bench","org_slug":"personal"}' >/dev/null
  machine=$(api /apps/bench/machines -X POST -d '{"config":{"image":"flyio/fastify-functions","services":[
    {"protocol":"tcp","internal_port":8080,"autostop":false,
     "ports":[{"port":80,"handlers":["http"]},{"port":443,"handlers":["tls","http"]}]}]}}')
  MACHINE_IP[$name]=$(echo "$machine" | python3 -c 'import json,sys; print(json.load(sys.stdin)["private_ip"])')
  for _ in $(seq 200); do curl -sf -o /dev/null -H "Host: $HOST" "http://127.0.0.1:$http/" && break; sleep 0.05; done
  local machines
  machines=$(descendants "${PID[$name]}")
  [ "$workers" -le 1 ] && taskset -apc 0 "${PID[$name]}" >/dev/null
  if [ -n "${MACHINE_CPU:-}" ]; then
    for pid in $machines; do taskset -apc "$MACHINE_CPU" "$pid" >/dev/null; done
  fi
}

start_edgewake edgewake "$BIN" 127.77.0.0/24
IP=${MACHINE_IP[edgewake]}
TARGETS=("direct" "edgewake")
if [ -n "${BASELINE_BIN:-}" ]; then
  start_edgewake baseline "$BASELINE_BIN" 127.78.0.0/24 "$BASELINE_WORKERS"
  TARGETS+=("baseline")
fi
TARGETS+=("nginx" "haproxy")

# The peers' configs: $PEERS if set, else shared/bench/peers.sh beside the checkout (a
# worktree under /work/wt finds it two levels up).
for candidate in "${PEERS:-}" "$ROOT/../shared/bench/peers.sh" "$ROOT/../../shared/bench/peers.sh"; do
  [ -n "$candidate" ] && [ -f "$candidate" ] && PEERS=$candidate && break
done
[ -f "${PEERS:-}" ] || { echo "no peers.sh: set PEERS=/path/to/shared/bench/peers.sh" >&2; exit 1; }
PEER_DIR="$WORK/peer" BACKEND="$IP:8080" bash "$PEERS" start

# nginx speaks TLS 1.3 as edgewake does (nginx 1.23.4 and later do by default; Debian's
# 1.22 offers TLS 1.0-1.2 only). On TLS 1.2 wrk resumes its session without any key
# exchange, where TLS 1.3 resumption does an X25519 exchange on both sides: the
# handshake rows compared the two protocols until 2026-11-29. NGINX_TLS=debian keeps
# Debian's default.
if [ "${NGINX_TLS:-1.3}" != debian ]; then
  sed -i 's|ssl_certificate_key \([^;]*\);|& ssl_protocols TLSv1.2 TLSv1.3;|' "$WORK/peer/nginx.conf"
  grep -q "ssl_protocols TLSv1.2 TLSv1.3" "$WORK/peer/nginx.conf" ||
    { echo "could not give nginx TLS 1.3 (peers.sh's nginx.conf changed?)" >&2; exit 1; }
  nginx -c "$WORK/peer/nginx.conf" -s reload 2>"$WORK/peer/reload.err" ||
    { cat "$WORK/peer/reload.err" >&2; exit 1; }
  sleep 0.5
  curl -sfk --tlsv1.3 -o /dev/null https://127.0.0.1:18443/ ||
    { echo "nginx does not answer over TLS 1.3" >&2; exit 1; }
fi

# PEER_HEADERS=1: the peers send the machine the forwarding headers edgewake sends
# (nine: Fly's contract's eight and edgewake's X-Forwarded-Host, where peers.sh's configs
# add one), so the machine behind each proxy parses the same head and the comparison is
# of the proxies alone.
if [ "${PEER_HEADERS:-0}" = 1 ]; then
  P="$WORK/peer"
  nginx_headers='proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Ssl off;
    proxy_set_header X-Forwarded-Port $server_port; proxy_set_header X-Forwarded-Host $host;
    proxy_set_header Fly-Client-IP $remote_addr; proxy_set_header Fly-Forwarded-Port $server_port;
    proxy_set_header Fly-Region ams; proxy_set_header Via "1.1 nginx";'
  sed -i "s|proxy_set_header X-Forwarded-For \\\$proxy_add_x_forwarded_for;|&\\n    ${nginx_headers//$'\n'/\\n}|" "$P/nginx.conf"
  nginx -c "$P/nginx.conf" -s reload
  sed -i '/^backend be/a\
  http-request set-header X-Forwarded-Proto http\
  http-request set-header X-Forwarded-Ssl off\
  http-request set-header X-Forwarded-Port %[dst_port]\
  http-request set-header X-Forwarded-Host %[req.hdr(host)]\
  http-request set-header Fly-Client-IP %[src]\
  http-request set-header Fly-Forwarded-Port %[dst_port]\
  http-request set-header Fly-Region ams\
  http-request add-header Via "1.1 haproxy"' "$P/haproxy.cfg"
  kill "$(cat "$P/haproxy.pid")" && sleep 0.3 && haproxy -f "$P/haproxy.cfg"
  sleep 0.5
  for port in 18081 18082; do # the machine's echo (`/`) shows what it was sent
    curl -sf -H "Host: $HOST" "http://127.0.0.1:$port/" | grep -q '"fly-region":"ams"' ||
      { echo "the peer on $port does not send the forwarding headers" >&2; exit 1; }
  done
fi
for pidfile in "$WORK/peer/nginx.pid" "$WORK/peer/haproxy.pid"; do
  for pid in $(cat "$pidfile") $(pgrep -P "$(cat "$pidfile")" || true); do taskset -apc 0 "$pid" >/dev/null; done
done

# One wrk run; prints "rps p50_ms p99_ms".
run_wrk() {
  local url=$1; shift
  taskset -c 1 wrk -t1 -d"${SECONDS_PER_RUN}s" --latency -H "Host: $HOST" ${CLIENT_HEADERS[@]+"${CLIENT_HEADERS[@]}"} "$@" "$url" 2>/dev/null | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ {rps=$2} / 50%/ {p50=ms($2)} / 99%/ {p99=ms($2)}
    # A proxy that answers errors fast must not look fast: such a run counts as 0.
    /Non-2xx|Socket errors/ {print "  (" $0 ")" > "/dev/stderr"; if ($0 ~ /Non-2xx/) rps=0}
    END {printf "%.0f %.3f %.3f\n", rps, p50, p99}'
}

# One h2load run (HTTP/2 over TLS); prints "rps mean_ms max_ms" (h2load reports no
# percentiles: the mean stands in the p50 column, the maximum in the p99 column).
run_h2() {
  local url=$1
  taskset -c 1 h2load -t1 -c16 -m32 -D "$SECONDS_PER_RUN" -H ":authority: $HOST" ${CLIENT_HEADERS[@]+"${CLIENT_HEADERS[@]}"} "$url" 2>/dev/null | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /^finished in/ {rps=$4}
    /^time for request:/ {max=ms($5); mean=ms($6)}
    END {printf "%.0f %.3f %.3f\n", rps, mean, max}'
}

declare -A RESULTS
read -r -a SCENARIOS <<<"${SCENARIOS:-http-64 http-256 https-64 https-newconn h2}"
REQUEST_PATH=${REQUEST_PATH:-/?bytes=12}
url_for() {
  local p=$REQUEST_PATH
  case "$1:$2" in
    direct:http-*) echo "http://$IP:8080$p" ;;
    edgewake:http-*|baseline:http-*) echo "http://127.0.0.1:${HTTP_PORT[$1]}$p" ;;
    edgewake:*|baseline:*) echo "https://127.0.0.1:${HTTPS_PORT[$1]}$p" ;;
    nginx:http-*) echo "http://127.0.0.1:18081$p" ;;
    nginx:*) echo "https://127.0.0.1:18443$p" ;;
    haproxy:http-*) echo "http://127.0.0.1:18082$p" ;;
    # The machine speaks plain HTTP only; peers.sh gives HAProxy no TLS listener.
    *) echo "" ;;
  esac
}
# What wrk is given for a scenario, into WRK_ARGS (h2 is h2load's: none); the one place
# that says, for the rounds, PROFILE and SYSCALLS alike. An unknown scenario fails.
scenario_args() {
  case "$1" in
    http-64|https-64) WRK_ARGS=(-c64) ;;
    http-256) WRK_ARGS=(-c256) ;;
    # wrk drops a header written without a space after the colon: `Connection:close`
    # was never sent, and this ran kept-alive connections until 2026-11-29.
    https-newconn|http-newconn) WRK_ARGS=(-c16 -H "Connection: close") ;;
    h2) WRK_ARGS=() ;;
    *) echo "no scenario $1 (http-64 http-256 https-64 https-newconn http-newconn h2)" >&2
       return 1 ;;
  esac
}
run_scenario() {
  local url=$2
  scenario_args "$1" || return 1
  if [ "$1" = h2 ]; then run_h2 "$url"; else run_wrk "$url" "${WRK_ARGS[@]}"; fi
}
for scenario in "${SCENARIOS[@]}"; do scenario_args "$scenario" || exit 1; done
pids_of() {
  case "$1" in
    edgewake|baseline) echo "${PID[$1]}" ;;
    nginx) pgrep -P "$(cat "$WORK/peer/nginx.pid")" | paste -sd, ;;
    haproxy) cat "$WORK/peer/haproxy.pid" ;;
  esac
}

# PROFILE=1: instead of the rounds, sample edgewake's CPU (perf, 4 kHz; user space only
# unless PERF_EVENT=cpu-clock) over one run of PROFILE_SCENARIO (default http-64) and
# print the top symbols.
if [ "${PROFILE:-0}" = 1 ]; then
  scenario_args "${PROFILE_SCENARIO:-http-64}" || exit 1
  need perf || { apt-get install -y -qq linux-perf >/dev/null; }
  perf record -q -F 4000 -e "${PERF_EVENT:-cpu-clock:u}" ${PERF_ARGS:-} -p "${PID[edgewake]}" -o "$WORK/perf.data" &
  PERF=$!
  sleep 0.2
  run_scenario "${PROFILE_SCENARIO:-http-64}" "$(url_for edgewake "${PROFILE_SCENARIO:-http-64}")" >/dev/null
  kill -INT "$PERF"; wait "$PERF" 2>/dev/null || true
  perf report -q -i "$WORK/perf.data" --no-children --sort ${SORT:-symbol} ${REPORT_ARGS:-} 2>/dev/null | head -"${TOP:-40}"
  exit 0
fi

# SYSCALLS=1: instead of the rounds, measure each proxy's CPU (user, system), system calls
# (perf tracepoints) and context switches per request, over one keep-alive run at 64
# connections (HTTP for all, HTTPS for edgewake and nginx), and beside it the CPU per
# request of the machine (what a shared core also pays for) and of the client (wrk), and
# all three with the proxy's (all_us): both cores are near full in the rounds, so a
# proxy's rate follows the whole system's CPU per request, not its own alone.
if [ "${SYSCALLS:-0}" = 1 ]; then
  need perf || { apt-get install -y -qq linux-perf >/dev/null; }
  # Summed user and system clock ticks, and voluntary and involuntary context switches,
  # of the comma-separated pids and all their threads.
  counters() {
    local user=0 sys=0 vol=0 invol=0 u s v i task
    for pid in ${1//,/ }; do
      for task in /proc/"$pid"/task/*; do
        read -r u s < <(awk '{print $14, $15}' "$task/stat")
        v=$(awk '/^voluntary_ctxt_switches/ {print $2}' "$task/status")
        i=$(awk '/^nonvoluntary_ctxt_switches/ {print $2}' "$task/status")
        user=$((user + u)); sys=$((sys + s)); vol=$((vol + v)); invol=$((invol + i))
      done
    done
    echo "$user $sys $vol $invol"
  }
  machine_pids=$(descendants "${PID[edgewake]}" | paste -sd,)
  events=raw_syscalls:sys_enter
  for call in read recvfrom readv write sendto writev epoll_wait epoll_pwait epoll_ctl futex sched_yield; do
    events="$events,syscalls:sys_enter_$call"
  done
  runs="edgewake:http-64 nginx:http-64 haproxy:http-64 edgewake:https-64 nginx:https-64"
  [ -n "${BASELINE_BIN:-}" ] && runs="edgewake:http-64 baseline:http-64 nginx:http-64 haproxy:http-64 edgewake:https-64 baseline:https-64 nginx:https-64"
  hz=$(getconf CLK_TCK)
  printf "%-9s %-9s %9s %8s %8s %8s %9s %8s %8s %10s %9s %8s\n" proxy scenario requests user_us sys_us total_us syscalls cs_vol cs_inv machine_us client_us all_us
  for run in ${RUNS:-$runs}; do
    target=${run%%:*}; scenario=${run#*:}
    scenario_args "$scenario" || exit 1
    [ "$scenario" = h2 ] && { echo "SYSCALLS runs wrk's scenarios, not h2" >&2; exit 1; }
    url=$(url_for "$target" "$scenario")
    perf stat -x, -e "$events" -p "$(pids_of "$target")" -o "$WORK/perf-$target.txt" &
    PERF=$!
    sleep 0.2
    before=$(counters "$(pids_of "$target")"); machine_before=$(counters "$machine_pids")
    requests=$(perf stat -x, -e task-clock -o "$WORK/client-$target.txt" taskset -c 1 wrk -t1 -d"${SECONDS_PER_RUN}s" -H "Host: $HOST" ${CLIENT_HEADERS[@]+"${CLIENT_HEADERS[@]}"} "${WRK_ARGS[@]}" "$url" | awk '/requests in/ {print $1}')
    after=$(counters "$(pids_of "$target")"); machine_after=$(counters "$machine_pids")
    kill -INT "$PERF"; wait "$PERF" 2>/dev/null || true
    calls=$(awk -F, -v n="$requests" '$3 ~ /raw_syscalls:sys_enter/ {printf "%.2f", $1 / n}' "$WORK/perf-$target.txt")
    client=$(awk -F, -v n="$requests" '$3 == "task-clock" {printf "%.2f", $1 * 1000 / n}' "$WORK/client-$target.txt")
    echo "$before $after $machine_before $machine_after" | awk -v n="$requests" -v hz="$hz" -v t="$target" -v s="$scenario" -v c="$calls" -v w="$client" '{
      user=($5-$1)/hz/n*1e6; sys=($6-$2)/hz/n*1e6; m=(($13-$9)+($14-$10))/hz/n*1e6
      printf "%-9s %-9s %9d %8.2f %8.2f %8.2f %9s %8.2f %8.2f %10.2f %9.2f %8.2f\n", t, s, n, user, sys, user+sys, c, ($7-$3)/n, ($8-$4)/n, m, w, user+sys+m+w }'
    awk -F, -v n="$requests" '$3 ~ /syscalls:sys_enter_/ && $1+0 > 0 {
      name=$3; sub(/.*sys_enter_/, "", name); printf "    %-12s %6.2f\n", name, $1 / n }' "$WORK/perf-$target.txt"
  done
  exit 0
fi

for round in $(seq "$ROUNDS"); do
  for scenario in "${SCENARIOS[@]}"; do
    for target in "${TARGETS[@]}"; do
      url=$(url_for "$target" "$scenario"); [ -n "$url" ] || continue
      RESULTS["$scenario/$target/$round"]=$(run_scenario "$scenario" "$url")
      echo "round $round $scenario $target: ${RESULTS["$scenario/$target/$round"]}" >&2
    done
  done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
{
  echo "edgewake load benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
  echo "load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "${SECONDS_PER_RUN}s runs x $ROUNDS rounds (medians); wrk -t1 / h2load -t1 on CPU 1; peers on CPU 0; edgewake: $WORKERS edge worker(s)$([ "$WORKERS" = 1 ] && echo ', CPU 0' || echo ', unpinned'); machine: $([ "$SHARED_CORE" = 1 ] && echo 'CPU 0 (shared core)' || echo "${MACHINE_CPU:+CPU }${MACHINE_CPU:-unpinned}"); path $REQUEST_PATH"
  # What else shapes the numbers, so a result file says what it measured.
  echo "peers send $([ "${PEER_HEADERS:-0}" = 1 ] && echo "edgewake's forwarding headers" || echo 'one forwarding header'); nginx TLS: $([ "${NGINX_TLS:-}" = debian ] && echo "Debian's 1.0-1.2" || echo '1.2 and 1.3'); User-Agent: ${USER_AGENT:-none}"
  printf "%-14s %-9s %10s %9s %9s\n" scenario target rps p50_ms p99_ms
  for scenario in "${SCENARIOS[@]}"; do
    for target in "${TARGETS[@]}"; do
      [ -n "${RESULTS["$scenario/$target/1"]:-}" ] || continue
      col() { for r in $(seq "$ROUNDS"); do echo "${RESULTS["$scenario/$target/$r"]}" | cut -d' ' -f"$1"; done | median; }
      printf "%-14s %-9s %10.0f %9.3f %9.3f\n" "$scenario" "$target" "$(col 1)" "$(col 2)" "$(col 3)"
      RESULTS["$scenario/$target/median"]=$(col 1)
    done
  done
  [[ " ${SCENARIOS[*]} " == *" h2 "* ]] && echo "(h2: h2load -c16 -m32; p50 column = mean, p99 column = max)"
  echo "ratios (rps):"
  for scenario in "${SCENARIOS[@]}"; do
    e=${RESULTS["$scenario/edgewake/median"]:-}
    for peer in haproxy nginx baseline direct; do
      p=${RESULTS["$scenario/$peer/median"]:-}
      if [ -n "$e" ] && [ -n "$p" ]; then
        printf "  %-14s edgewake/%-8s %.2f\n" "$scenario" "$peer" "$(echo "$e / $p" | bc -l)"
      fi
    done
  done
} | tee "$OUT"
echo "written to $OUT" >&2
