#!/usr/bin/env bash
# Builds a minimal Debian bookworm image with debootstrap + `docker import`, for machines that can
# reach Debian's mirror but no image registry. Cached by name: built once per machine (--force
# rebuilds). The image keeps apt, so the Dockerfiles install their packages in it as on
# debian:bookworm-slim.
#
# Usage: scripts/build-base-image.sh [IMAGE]   (default clearml-gateway-base:bookworm)
# Env: DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

FORCE=false
[ "${1:-}" = "--force" ] && { FORCE=true; shift; }
IMAGE=${1:-clearml-gateway-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if ! $FORCE && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "build-base-image: $IMAGE exists (--force rebuilds)"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "build-base-image: debootstrap needs root" >&2; exit 1; }
if ! command -v debootstrap >/dev/null; then
  apt-get install -y --no-install-recommends debootstrap >/dev/null
fi

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/gw-base.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT
debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR"
# As in the slim images: no package caches, no docs, apt without recommends.
rm -rf "$ROOT"/var/cache/apt/* "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc/* \
  "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/*
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$ROOT/etc/apt/apt.conf.d/99slim"
printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
  >"$ROOT/etc/dpkg/dpkg.cfg.d/99slim"
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
  "$MIRROR" "$MIRROR" >"$ROOT/etc/apt/sources.list"
tar -C "$ROOT" --numeric-owner -c . | docker import -c 'CMD ["bash"]' - "$IMAGE" >/dev/null
echo "build-base-image: built $IMAGE"
