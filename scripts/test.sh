#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what is missing, check formatting and lints,
# then run every test (unit, real nginx + Lua, real clearml SDK).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test 2>&1
