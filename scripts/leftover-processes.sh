#!/usr/bin/env bash
# Lists processes a test run left behind and fails if there is one: anything whose command line,
# working directory or open files point into the run's temp directory (nginx masters and their
# workers, routers with their logs, the demo, Chromium, Python scripts), and this checkout's SDK
# test scripts.
# Usage: scripts/leftover-processes.sh <temp dir of the run>
set -uo pipefail
cd "$(dirname "$0")/.."
run_dir=$(realpath "$1")
repo=$(pwd -P)

# This script's own subshells (their command lines name the directory too).
ours() {
  local pid=$1
  while [ "$pid" -gt 1 ]; do
    [ "$pid" = $$ ] && return 0
    pid=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null) || return 1
  done
  return 1
}

leftovers() {
  local pid cmd
  {
    # Open files and working directories in the run's temp directory (nginx workers keep its logs open).
    find /proc/[0-9]*/fd /proc/[0-9]*/cwd -maxdepth 1 -lname "$run_dir*" 2>/dev/null | cut -d/ -f3
    # Command lines naming the temp directory or this checkout's test scripts.
    grep -lsF -e "$run_dir" -e "$repo/crates/testkit/tests/sdk/" /proc/[0-9]*/cmdline | cut -d/ -f3
  } | sort -un | while read -r pid; do
    ours "$pid" && continue
    # Gone meanwhile (or one of the commands above, which have ended).
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || continue
    cmd=${cmd%"${cmd##*[! ]}"}
    [ -n "$cmd" ] || continue
    printf '  pid %s (parent %s): %s\n' "$pid" "$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)" "${cmd:0:300}"
  done
}

# Processes stopping at the very end of the run get a moment.
for _ in $(seq 50); do
  found=$(leftovers)
  [ -z "$found" ] && exit 0
  sleep 0.1
done
echo "leftover processes from the test run (the harness must stop and reap what it starts):"
echo "$found"
exit 1
