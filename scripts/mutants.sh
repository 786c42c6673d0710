#!/usr/bin/env bash
# Mutation testing of the modules that hold edgewake's guarantees (issue 18; results and
# what each missed mutant means are in TESTING.md). cargo-mutants plants one bug at a time
# (a function that returns a constant, a flipped comparison, a deleted `!`...) and runs the
# tests that guard the module; a mutant no test fails on ("missed") is a behaviour no test
# holds. Not part of CI.
#
# Five groups, each one cargo-mutants run over a copy of the tree; the lifecycle is cut
# in three so that each group finishes within about half an hour:
#   wake: how a request gets a started machine (lifecycle/wake.rs, acquire.rs, start.rs;
#         about 77 mutants);
#   pick: which machine it gets (lifecycle/pick.rs, proxy/place.rs; about 86);
#   stop: how machines stop (lifecycle/stop.rs, reaper.rs, run.rs; about 78).
#         These three run against the library's lifecycle and placement tests only
#         (they hold the races on paused time with the fake driver); `core` is all three.
#   unit: the trusted client address (trusted.rs, proxy/headers.rs), the PROXY protocol,
#         SNI certificates (tls/certs.rs), against their library tests (real sockets where
#         I/O matters).
#   e2e:  what only a running edgewake shows: the API's lifecycle handlers and the PROXY
#         header's use on a connection (edge.rs `client_behind`), against the API and
#         placement test binaries.
#
# Cost on 2 cores: each mutant rebuilds the library (20 s on an idle machine, a minute
# under load), so each lifecycle group takes 25 to 30 minutes on an idle machine (`core`
# 1.5 hours, longer under load) and `unit` about 40 minutes; the first run builds the
# dependencies into target/mutants (another ~15 minutes), so the developer's own
# target/ is neither locked nor invalidated. After a change, MUTANTS_ARGS=--iterate tests
# only what was missed before or whose line moved (cargo-mutants keeps the earlier
# results). Installs cargo-mutants from crates.io if missing.
#
# Usage: [MUTANTS_ARGS=...] scripts/mutants.sh [wake] [pick] [stop] [core] [unit] [e2e]
#        (default: core unit e2e; core = wake pick stop)
# Results: target/mutants-out/<group>/mutants.out/{caught,missed,timeout,unviable}.txt
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo mutants --version >/dev/null 2>&1; then
    cargo install --locked cargo-mutants
fi
export CARGO_TARGET_DIR="$PWD/target/mutants"
OUT=target/mutants-out
mkdir -p "$OUT" # cargo-mutants makes the group's directory, not its parents

# cargo-mutants exits non-zero when a mutant is missed; the summary below says so.
run_group() {
    local name=$1
    shift
    echo "== $name"
    # shellcheck disable=SC2086 # MUTANTS_ARGS is a list of options
    cargo mutants --no-shuffle --gitignore=true --jobs=1 --build-timeout=900 \
        --output="$OUT/$name" ${MUTANTS_ARGS:-} "$@" || true
}

# The lifecycle groups' tests: the library's lifecycle and placement modules.
lifecycle_group() {
    local name=$1
    shift
    run_group "$name" "${@/#/--file=}" --timeout=60 --cargo-arg=--lib \
        -- -- lifecycle:: proxy::place::
}

wake() {
    lifecycle_group wake src/lifecycle/wake.rs src/lifecycle/acquire.rs src/lifecycle/start.rs
}

pick() {
    lifecycle_group pick src/lifecycle/pick.rs src/proxy/place.rs
}

stop() {
    lifecycle_group stop src/lifecycle/stop.rs src/lifecycle/reaper.rs src/lifecycle/run.rs
}

unit() {
    local files=(src/trusted.rs src/proxy/headers.rs src/proxy_protocol.rs src/tls/certs.rs)
    run_group unit "${files[@]/#/--file=}" --timeout=60 --cargo-arg=--lib \
        -- -- trusted:: proxy::headers:: proxy_protocol:: tls::
}

e2e() {
    local targets=(api api_lifecycle api_wire placement)
    run_group e2e --file=src/api/lifecycle.rs --file=src/edge/mod.rs \
        --re='client_behind|src/api/lifecycle.rs' --exclude-re='with (Ok\()?Json::' \
        --timeout=180 \
        "${targets[@]/#/--cargo-arg=--test=}"
}

[ $# -gt 0 ] || set -- core unit e2e
groups=()
for group in "$@"; do
    case $group in
    core) groups+=(wake pick stop) ;;
    wake | pick | stop | unit | e2e) groups+=("$group") ;;
    *)
        echo "unknown group $group (wake, pick, stop, core, unit, e2e)" >&2
        exit 2
        ;;
    esac
done
for group in "${groups[@]}"; do
    "$group"
done

echo "== summary (mutants: tried = caught + missed + timeout + unviable)"
for group in "${groups[@]}"; do
    dir=$OUT/$group/mutants.out
    count() { if [ -f "$dir/$1.txt" ]; then wc -l <"$dir/$1.txt"; else echo 0; fi; }
    printf '%-5s caught %3d  missed %3d  timeout %3d  unviable %3d\n' "$group" \
        "$(count caught)" "$(count missed)" "$(count timeout)" "$(count unviable)"
    [ -s "$dir/missed.txt" ] && sed 's/^/  missed: /' "$dir/missed.txt"
done
exit 0
