#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what is missing, check formatting and lints,
# then run every test (unit, real nginx + Lua, real clearml SDK, real Docker, headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
log=$(mktemp)
# The run's own temp directory: whatever a test leaves running can be told apart by its paths.
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/gateway-test-run.XXXXXX")
# mktemp makes it 0700: nginx workers (user nobody) must reach the files tests put under it.
chmod 755 "$run_tmp"
trap 'rm -rf "$log" "$run_tmp"' EXIT
# The proxy's Lua modules on their own (plain luajit, no nginx).
scripts/lua-tests.sh
# Every crate of the workspace: libraries, binaries and integration tests (no doc tests).
status=0
TMPDIR=$run_tmp cargo test --workspace --no-fail-fast --lib --bins --tests 2>&1 | tee "$log" || status=$?
# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6 } END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
# Nothing the suite started may outlive it.
scripts/leftover-processes.sh "$run_tmp" || status=1
exit "$status"
