# What the benchmark scripts share; sourced by load.sh, memory.sh and contract-cost.sh (ROOT set first).

# A free TCP port on loopback.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Sets BIN: EDGEWAKE_BIN=path runs that binary instead of building this checkout (a
# before/after comparison on one machine); else this checkout's release build.
edgewake_bin() {
  if [ -n "${EDGEWAKE_BIN:-}" ]; then
    BIN=$EDGEWAKE_BIN
  else
    (cd "$ROOT" && cargo build --release --quiet)
    BIN="$ROOT/target/release/edgewake"
  fi
}
