#!/usr/bin/env bash
# Builds the two gateway images from this machine's files only (no registry, no base image):
#   router: the clearml-router binary (glibc, dynamically linked) with the libraries ldd lists,
#           a CA bundle, a user for uid 65532 and /tmp, on an empty base;
#   proxy:  Debian's nginx with the Lua, stream and stream js modules, LuaJIT, lua-resty-core/lrucache and
#           lua-cjson, a shell and the few tools the entrypoint uses, with the libraries ldd lists,
#           plus the gateway's docker/nginx.conf and docker/proxy-entrypoint.sh.
# Each rootfs is packed into a tar with explicit owners (the shared directories belong to uid
# 65532, as in Dockerfile.proxy) and loaded with `docker import`.
#
# Usage: scripts/build-test-images.sh [--router-bin PATH] [--router-image NAME] [--proxy-image NAME]
# Defaults: target/release/clearml-router (built with `cargo build --release` if missing),
# clearml-gateway-router:local and clearml-gateway-proxy:local. Needs the packages of
# scripts/setup.sh (nginx, libnginx-mod-http-lua, libnginx-mod-stream, libnginx-mod-stream-js, luajit2, lua-resty-core,
# lua-cjson) and a running Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUTER_BIN=""
ROUTER_IMAGE="clearml-gateway-router:local"
PROXY_IMAGE="clearml-gateway-proxy:local"
while (($#)); do
  case "$1" in
    --router-bin) ROUTER_BIN="$2"; shift 2 ;;
    --router-image) ROUTER_IMAGE="$2"; shift 2 ;;
    --proxy-image) PROXY_IMAGE="$2"; shift 2 ;;
    *) echo "build-test-images: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$ROUTER_BIN" ]; then
  ROUTER_BIN=target/release/clearml-router
  [ -x "$ROUTER_BIN" ] || cargo build --release -p clearml-router --bin clearml-router
fi
for tool in docker python3 ldd nginx luajit; do
  command -v "$tool" >/dev/null || { echo "build-test-images: $tool is missing (run scripts/setup.sh)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gw-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Copies files (following symlinks) to the same paths under a rootfs.
put() {
  local root=$1; shift
  local f
  for f in "$@"; do
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
  done
}

# The libraries (and the loader) that binaries or shared objects load.
libs_of() {
  local f
  for f in "$@"; do ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true; done | sort -u
}

# Copies binaries or shared objects and every library they load.
put_with_libs() {
  local root=$1; shift
  put "$root" "$@"
  # shellcheck disable=SC2046
  put "$root" $(libs_of "$@")
}

# Packs a rootfs into a tar (root-owned, but for the paths given as uid 65532) and imports it.
import() {
  local root=$1 image=$2; shift 2
  local changes=()
  while (($#)) && [ "$1" != "--" ]; do changes+=(-c "$1"); shift; done
  shift
  python3 - "$root" "$WORK/$(basename "$root").tar" "$@" <<'PY'
import os, sys, tarfile
root, out, owned = sys.argv[1], sys.argv[2], set(sys.argv[3:])
def add(tar, path):
    arc = "." + path[len(root):]
    info = tar.gettarinfo(path, arc)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if arc[1:] in owned:
        info.uid = info.gid = 65532
    if info.isreg():
        with open(path, "rb") as f:
            tar.addfile(info, f)
    else:
        tar.addfile(info)

with tarfile.open(out, "w") as tar:
    add(tar, root)
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in dirs + sorted(files):
            add(tar, os.path.join(base, name))
PY
  docker import "${changes[@]}" "$WORK/$(basename "$root").tar" "$image" >/dev/null
}

SHARED=(/etc/nginx/conf.d /usr/local/openresty/nginx/lua)

# --- router ---------------------------------------------------------------------------------
R="$WORK/router"
mkdir -p "$R/tmp" "$R/etc/ssl/certs" "$R${SHARED[0]}" "$R${SHARED[1]}"
chmod 1777 "$R/tmp"
cp "$ROUTER_BIN" "$R/clearml-router"
strip --strip-debug "$R/clearml-router" 2>/dev/null || true
# shellcheck disable=SC2046
put "$R" $(libs_of "$ROUTER_BIN")
cp -L /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$R/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$R/etc/group"
import "$R" "$ROUTER_IMAGE" \
  'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  'USER 65532:65532' \
  'ENTRYPOINT ["/clearml-router"]' \
  'CMD ["run"]' \
  -- "${SHARED[@]}"

# --- proxy ----------------------------------------------------------------------------------
P="$WORK/proxy"
mkdir -p "$P/tmp" "$P/run" "$P/var/lib/nginx" "$P/var/log/nginx" "$P/etc/ssl/certs" \
  "$P/usr/local/bin" "$P${SHARED[0]}" "$P${SHARED[1]}" "$P/usr/share/nginx" "$P/etc/nginx"
chmod 1777 "$P/tmp"
tools=(/usr/sbin/nginx /usr/bin/luajit /bin/sh)
for t in find sort cksum sleep cat rm ls mkdir; do tools+=("$(command -v "$t")"); done
# TCP endpoints need the stream js module (libnginx-mod-stream-js).
[ -e /usr/lib/nginx/modules/ngx_stream_js_module.so ] || { echo "build-test-images: run scripts/setup.sh (no stream js module)" >&2; exit 1; }
put_with_libs "$P" "${tools[@]}" /usr/lib/nginx/modules/*.so
# Debian's module snippets (load_module modules/x.so, relative to the prefix /usr/share/nginx).
cp -a /usr/share/nginx/modules-available "$P/usr/share/nginx/"
ln -s ../../lib/nginx/modules "$P/usr/share/nginx/modules"
cp -a /etc/nginx/modules-enabled "$P/etc/nginx/"
# Lua libraries: resty.core, resty.lrucache, ngx.*, cjson.
mkdir -p "$P/usr/share/lua"
cp -aL /usr/share/lua/5.1 "$P/usr/share/lua/"
# LuaJIT's own jit.* modules (`luajit -bl` needs jit.bcsave).
for d in /usr/share/luajit*; do [ -d "$d" ] && cp -aL "$d" "$P/usr/share/"; done
cjson=(/usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so)
[ -e "${cjson[0]}" ] || cjson=("$(find /usr/lib -path '*lua/5.1/cjson.so' | head -1)")
put_with_libs "$P" "${cjson[@]}"
cp -L /etc/ssl/certs/ca-certificates.crt "$P/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$P/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$P/etc/group"
cp docker/nginx.conf "$P/etc/nginx/nginx.conf"
cp docker/proxy-entrypoint.sh "$P/usr/local/bin/clearml-proxy-entrypoint"
chmod 755 "$P/usr/local/bin/clearml-proxy-entrypoint"
import "$P" "$PROXY_IMAGE" \
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  'ENTRYPOINT ["/usr/local/bin/clearml-proxy-entrypoint"]' \
  'CMD ["nginx", "-g", "daemon off;"]' \
  -- "${SHARED[@]}"

echo "build-test-images: built $ROUTER_IMAGE and $PROXY_IMAGE"
