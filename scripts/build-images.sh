#!/usr/bin/env bash
# Builds the two gateway images with the shipped Dockerfiles, on a machine without an image
# registry: the Debian base comes from debootstrap (scripts/build-base-image.sh, built once per
# machine and kept as clearml-gateway-base:bookworm), the proxy's packages from Debian's mirror
# (apt inside Dockerfile.proxy), and the router binary from this host (Dockerfile.router's
# `prebuilt` target; no Rust image needed).
#
# Usage: scripts/build-images.sh ROUTER_IMAGE PROXY_IMAGE [--router-bin PATH]
# Default binary: target/release/clearml-router (built with `cargo build --release` if missing).
# Env: BASE_IMAGE (default clearml-gateway-base:bookworm, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 2 ] || { echo "usage: $0 ROUTER_IMAGE PROXY_IMAGE [--router-bin PATH]" >&2; exit 2; }
ROUTER_IMAGE=$1
PROXY_IMAGE=$2
shift 2
ROUTER_BIN=""
while (($#)); do
  case "$1" in
    --router-bin) ROUTER_BIN="$2"; shift 2 ;;
    *) echo "build-images: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$ROUTER_BIN" ]; then
  ROUTER_BIN=target/release/clearml-router
  [ -x "$ROUTER_BIN" ] || cargo build --release -p clearml-router --bin clearml-router
fi
BASE_IMAGE=${BASE_IMAGE:-clearml-gateway-base:bookworm}
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || scripts/build-base-image.sh "$BASE_IMAGE"

# Small build contexts: the Dockerfile and the files it copies, not the repository's target dir.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gw-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/router/target/release" "$WORK/proxy/docker"
cp Dockerfile.router "$WORK/router/"
# Symbols are not needed in the image (a debug build shrinks from ~100 MB to ~25 MB).
strip -o "$WORK/router/target/release/clearml-router" "$ROUTER_BIN" 2>/dev/null \
  || cp "$ROUTER_BIN" "$WORK/router/target/release/clearml-router"
cp Dockerfile.proxy "$WORK/proxy/"
cp docker/nginx.conf docker/proxy-entrypoint.sh "$WORK/proxy/docker/"

docker build -q --build-arg BASE_IMAGE="$BASE_IMAGE" --target prebuilt \
  -f "$WORK/router/Dockerfile.router" -t "$ROUTER_IMAGE" "$WORK/router" >/dev/null
docker build -q --build-arg BASE_IMAGE="$BASE_IMAGE" \
  -f "$WORK/proxy/Dockerfile.proxy" -t "$PROXY_IMAGE" "$WORK/proxy" >/dev/null
echo "build-images: built $ROUTER_IMAGE and $PROXY_IMAGE (base $BASE_IMAGE)"
