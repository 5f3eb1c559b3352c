#!/usr/bin/env bash
# Installs what the gateway's demo and tests need on a fresh Debian machine (idempotent):
# nginx with the Lua, stream and stream js (TCP endpoints) modules, LuaJIT for `luajit -bl`, wrk for benchmarks, and a
# HAProxy and Caddy (peers in the data-plane benchmark), pebble (the ACME server of the HTTPS tests), and a Python venv (.venv) with the real clearml SDK that the tests use as the compatibility judge.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(nginx libnginx-mod-http-lua libnginx-mod-stream libnginx-mod-stream-js libnginx-mod-http-ndk
  lua-resty-core lua-resty-lrucache lua-cjson luajit2 libluajit2-5.1-2 wrk haproxy caddy python3-venv chromium pebble)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The package starts a system nginx on port 80; the gateway runs its own, so stop that one.
  $SUDO systemctl disable --now nginx >/dev/null 2>&1 || $SUDO service nginx stop >/dev/null 2>&1 || true
fi

# The real clearml SDK (the compatibility judge), a FastAPI/uvicorn app for the root_path test and
# schemathesis for the operator API's fuzz test.
if [ ! -x .venv/bin/python ] || [ ! -x .venv/bin/schemathesis ] \
  || ! .venv/bin/python -c "import clearml, fastapi, uvicorn" 2>/dev/null; then
  echo "setup: creating .venv with the clearml SDK, fastapi, uvicorn and schemathesis"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q "clearml>=2.1,<3" "fastapi>=0.100" "uvicorn>=0.29" "schemathesis>=4,<5"
fi
echo "setup: ready (nginx $(nginx -v 2>&1 | sed 's/.*\///'), clearml $(.venv/bin/python -c 'import clearml; print(clearml.__version__)'))"

# tests/docker.rs: a running Docker engine (the machine starts it) and docker-compose v1.
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "setup: installing docker-compose"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
