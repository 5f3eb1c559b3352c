#!/usr/bin/env bash
# The demo on a fresh machine: install what is missing, build, and run the whole gateway on this
# host (ClearML emulator with example tasks, task apps, nginx proxy, router). Extra arguments go to
# `clearml-gateway-demo` (e.g. --smoke to check the URLs and exit, --port 9090).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --quiet -p gateway-testkit --bin clearml-gateway-demo -- "$@"
