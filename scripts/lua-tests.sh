#!/usr/bin/env bash
# Unit tests of the proxy's Lua modules with plain luajit (no nginx): runs every
# crates/render/lua/tests/test_*.lua, prints one pass/fail count, exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
lua_dir=crates/render/lua
export LUA_PATH="$lua_dir/?.lua;$lua_dir/tests/?.lua;;"
export ROUTES_FIXTURES=crates/core/fixtures/routes_json
passed=0
failed=0
for test in "$lua_dir"/tests/test_*.lua; do
    out=$(luajit "$test" 2>&1)
    status=$?
    echo "$out"
    counts=$(tail -n 1 <<<"$out" | sed -nE 's/.*: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/p')
    if [[ -z "$counts" ]]; then
        # The file did not get to its summary (a load error): count it as one failure.
        failed=$((failed + 1))
    else
        read -r p f <<<"$counts"
        passed=$((passed + p))
        failed=$((failed + f))
        if [[ $status -ne 0 && $f -eq 0 ]]; then
            failed=$((failed + 1))
        fi
    fi
done
echo "lua tests: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
