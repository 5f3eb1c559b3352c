#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz / libFuzzer, nightly) of what the router parses from outside:
# tasks, the static routes file, routes.json, operator API bodies. The oracle (no panic, nothing
# unvalidated in a rendered nginx or Lua file) is gateway_render::oracle; CI replays the corpus
# with `cargo test -p gateway-render --test fuzz_corpus` instead (no nightly needed).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   default 60 s, every target
# Prints executions, executions per second and corpus size per target. New corpus entries land in
# fuzz/corpus/<target>/; crashes in fuzz/artifacts/<target>/ (exit status non-zero).
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(task static_routes routes_json operator_bodies)
toolchain=+nightly
cargo +nightly --version >/dev/null 2>&1 || { toolchain=""; export RUSTC_BOOTSTRAP=1; }
cargo $toolchain fuzz build -O >/dev/null 2>&1 || exit 2
failed=0
printf '%-16s %12s %10s %8s %6s\n' target executions exec/s corpus result
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log=$(mktemp)
    cargo $toolchain fuzz run -O "$target" "corpus/$target" -- -max_total_time="$seconds" -dict=json.dict \
        -print_final_stats=1 -rss_limit_mb=1024 >"$log" 2>&1
    status=$?
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -1)
    rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log" | tail -1)
    size=$(find "corpus/$target" -type f | wc -l)
    result=ok
    if [[ $status -ne 0 ]]; then
        result=FAIL
        failed=1
        grep -E "panicked|ERROR|SUMMARY" "$log" | head -5
    fi
    printf '%-16s %12s %10s %8s %6s\n' "$target" "${runs:-?}" "${rate:-?}" "$size" "$result"
    rm -f "$log"
done
exit $failed
