#!/usr/bin/env bash
# Memory benchmark: edgewake's RSS with many idle client connections, and after repeated
# bursts of them. Usage: bash benches/memory.sh [CONNECTIONS] [BURSTS]
# EDGEWAKE_BIN=path measures that binary (no build); H2=1 makes the clients HTTP/2 (prior
# knowledge) instead of HTTP/1.1.
#
# - starts edgewake (release) on free loopback ports with its own data dir, an app and a
#   machine of the bundled runtime with autostop off, default worker threads;
# - opens CONNECTIONS keep-alive connections, sends one GET on each (so each has been
#   through a whole request, and on HTTP/1.1 holds its own upstream), and keeps them
#   idle for IDLE_SECONDS (default 6: past the 4 s after which an idle client connection
#   lets its upstream go): RSS then, and per connection;
# - closes them, then runs BURSTS more rounds of open, request, close: RSS SETTLE_SECONDS
#   (default 12: past one 10 s check for free memory to give back) after each;
# - prints one table; VmRSS from /proc/<pid>/status.
set -euo pipefail
CONNECTIONS=${1:-5000}
BURSTS=${2:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/common.sh
source "$ROOT/benches/common.sh"
WORK=$(mktemp -d /tmp/edgewake-memory.XXXXXX)
cleanup() {
  [ -n "${EDGEWAKE_PID:-}" ] && kill "$EDGEWAKE_PID" 2>/dev/null && wait "$EDGEWAKE_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
edgewake_bin
HTTP=$(free_port); HTTPS=$(free_port); API=$(free_port)
TOKEN=memory-$$
cat >"$WORK/edgewake.toml" <<EOF
data_dir = "$WORK/data"
[edge]
idle_timeout = "1h"
[tls]
certs_dir = "$WORK/certs"
[machines]
private_ip_range = "127.78.0.0/24"
[images."flyio/fastify-functions"]
command = ["{bin_dir}/edgewake", "functions"]
EOF
ulimit -n "$(ulimit -Hn)"
EDGEWAKE_API_TOKEN=$TOKEN RUST_LOG=warn "$BIN" serve --config "$WORK/edgewake.toml" \
  --http "127.0.0.1:$HTTP" --https "127.0.0.1:$HTTPS" --api "127.0.0.1:$API" 2>"$WORK/edgewake.log" &
EDGEWAKE_PID=$!
api() { curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$API/v1$1" "${@:2}"; }
for _ in $(seq 100); do api /apps >/dev/null 2>&1 && break; sleep 0.05; done
api /apps -X POST -d '{"app_name":"mem","org_slug":"personal"}' >/dev/null
api /apps/mem/machines -X POST -d '{"config":{"image":"flyio/fastify-functions","services":[
  {"protocol":"tcp","internal_port":8080,"autostop":false,"ports":[{"port":80,"handlers":["http"]}]}]}}' >/dev/null
for _ in $(seq 200); do curl -sf -o /dev/null -H "Host: mem.localhost" "http://127.0.0.1:$HTTP/" && break; sleep 0.05; done

python3 - "$EDGEWAKE_PID" "$HTTP" "$CONNECTIONS" "$BURSTS" "${H2:-0}" "${IDLE_SECONDS:-6}" "${SETTLE_SECONDS:-12}" <<'PY'
import asyncio, sys
pid, port, count, bursts, h2 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
idle_seconds, settle_seconds = float(sys.argv[6]), float(sys.argv[7])

def fds():
    import os
    return len(os.listdir(f"/proc/{pid}/fd"))

def rss_kb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

GET = b"GET / HTTP/1.1\r\nHost: mem.localhost\r\n\r\n"
# HTTP/2 prior knowledge: preface, empty SETTINGS, SETTINGS ack, one HEADERS frame
# (END_STREAM|END_HEADERS) for GET http://mem.localhost/ with literal, unindexed fields.
def h2_request():
    def lit(name, value):
        return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
    block = b"\x82\x86\x84" + lit(b":authority", b"mem.localhost")  # GET, http, /
    frame = len(block).to_bytes(3, "big") + b"\x01\x05" + (1).to_bytes(4, "big") + block
    return (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
            + b"\x00\x00\x00\x04\x01\x00\x00\x00\x00" + frame)

async def one(idle, opened):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(h2_request() if h2 else GET)
    await writer.drain()
    seen = b""
    while (b"\r\n\r\n" not in seen) if not h2 else (len(seen) < 64):
        chunk = await reader.read(65536)
        if not chunk:
            break
        seen += chunk
    opened.append(1)
    await idle.wait()
    writer.close()

async def burst(hold):
    idle, opened = asyncio.Event(), []
    tasks = [asyncio.create_task(one(idle, opened)) for _ in range(count)]
    while len(opened) < count:
        await asyncio.sleep(0.05)
    await asyncio.sleep(idle_seconds)
    held = rss_kb()
    print(f"{'  (held: open descriptors)':<34} {'':8} {fds():6}")
    idle.set()
    await asyncio.gather(*tasks)
    await asyncio.sleep(settle_seconds)
    return held

async def main():
    base = rss_kb()
    print(f"{'when':<34} {'RSS MB':>8} {'fds':>6}")
    print(f"{'started, one request served':<34} {base/1024:8.1f} {fds():6}")
    held = await burst(True)
    print(f"{f'{count} idle connections':<34} {held/1024:8.1f}   ({(held-base)/count:.1f} KB each)")
    print(f"{'closed':<34} {rss_kb()/1024:8.1f} {fds():6}")
    for i in range(bursts):
        await burst(False)
        print(f"{f'after burst {i+2}':<34} {rss_kb()/1024:8.1f} {fds():6}")

asyncio.run(main())
PY
