#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what is missing, check formatting and lints,
# then run every test (unit, real nginx + Lua, real clearml SDK, real Docker, headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The proxy's Lua modules on their own (plain luajit, no nginx).
scripts/lua-tests.sh
# Every crate of the workspace: libraries, binaries and integration tests (no doc tests).
cargo test --workspace --lib --bins --tests 2>&1 | tee "$log"
# One closing line for the whole run.
awk '/^test result:/ { p += $4; f += $6 } END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
