#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ (cargo-fuzz, nightly), one at a time, each for a
# bounded time. A run starts from the committed seeds (fuzz/seeds/<target>/: hand-written
# inputs and the inputs that found a bug, never written to) and from what earlier runs on
# this machine found; what it finds goes to fuzz/corpus/<target>/ (git-ignored), which is
# then minimised in place. Each target has a dictionary of the tokens its inputs are made
# of (fuzz/dict/).
# Not part of CI. See fuzz/README.md for the targets and the runs so far.
#
#   scripts/fuzz.sh                  # every target, 60 s each
#   scripts/fuzz.sh duration 600     # one target, 10 minutes
#   FUZZ_NICE=0 scripts/fuzz.sh ...  # at normal priority (default: nice 19)
#
# Needs: rustup's nightly toolchain and `cargo install cargo-fuzz`. A crash leaves its
# input in fuzz/artifacts/<target>/ (git-ignored) and stops the script.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

TARGETS=(proxy_header route_host config_toml duration machine_config api_bodies)
target=${1:-all}
seconds=${2:-60}
nice_level=${FUZZ_NICE:-19}

# Longest input per target: a PROXY header is at most 4 kB with TLVs (v1: 107 bytes),
# an authority a few hundred bytes; configs and JSON bodies a few kB. Longer inputs
# only slow the search down.
max_len() {
    case $1 in
    proxy_header) echo 600 ;;
    route_host | duration) echo 256 ;;
    *) echo 4096 ;;
    esac
}

# No sanitizer: edgewake forbids unsafe code, and ASan would halve the executions per
# second on a shared machine. Debug assertions (-a) keep overflow checks on.
BUILD=(--sanitizer none --debug-assertions)

run() {
    local name=$1 corpus=corpus/$1 seeds=seeds/$1
    mkdir -p "$corpus"
    echo "== $name: ${seconds}s"
    # libFuzzer writes new inputs to the first directory only.
    nice -n "$nice_level" cargo +nightly fuzz run "${BUILD[@]}" "$name" "$corpus" "$seeds" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$name")" -rss_limit_mb=2048 \
        -dict="dict/$name.dict" -print_final_stats=1
    echo "== $name: minimising the corpus ($(ls "$corpus" | wc -l) inputs)"
    nice -n "$nice_level" cargo +nightly fuzz cmin "${BUILD[@]}" "$name" "$corpus" -- \
        -max_len="$(max_len "$name")" 2>&1 | tail -n 2
    echo "== $name: $(ls "$corpus" | wc -l) inputs, $(du -sh "$corpus" | cut -f1)"
}

if [[ $target == all ]]; then
    for name in "${TARGETS[@]}"; do run "$name"; done
elif [[ " ${TARGETS[*]} " == *" $target "* ]]; then
    run "$target"
else
    echo "unknown target $target (known: ${TARGETS[*]})" >&2
    exit 2
fi
