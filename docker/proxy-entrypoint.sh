#!/bin/sh
# Entry point of the proxy container (task_traffic_webserver).
#
# nginx runs as PID 1 (exec), so the router's SIGHUP over the Docker API reaches the nginx master
# and reloads it gracefully. With ROUTER__WEBSERVER__AUTO_RELOAD_CONFIG=true (no Docker socket,
# e.g. Kubernetes) a background loop watches the router's files instead and reloads nginx itself:
# when a structural file in conf.d or the Lua directory changes it waits until the files settle,
# runs `nginx -t` and then `nginx -s reload`; a config that fails `nginx -t` is not loaded (the
# running one keeps serving and the router, which waits for the new config hash, restores the
# previous files). routes.json is data that the Lua code re-reads without a reload, and dot-files
# are the router's temporary files and its validation staging directory: neither counts.
#
# Started as root (the vendor compose files set no user), it takes ownership of the pid folder
# /var/run/openresty (a root-owned bind mount in the vendor 2026 layout) and re-runs itself as
# PROXY_RUN_AS (default 65532:65532, the vendor's 2026 uid; `root` keeps root), keeping only the
# right to listen on ports below 1024.
set -eu

CONF_DIR=${PROXY_CONF_DIR:-/etc/nginx/conf.d}
# The Lua folder of the vendor's 2025 layout and of its 2026 layout: whichever is mounted.
LUA_DIRS=${PROXY_LUA_DIR:-/usr/local/openresty/nginx/lua /opt/openresty/nginx/lua}
INTERVAL=${PROXY_WATCH_INTERVAL_SECONDS:-1}
RUN_AS=${PROXY_RUN_AS:-65532:65532}
PID_DIR=/var/run/openresty

if [ "$(id -u)" = 0 ] && [ "$RUN_AS" != root ] && [ "$RUN_AS" != 0:0 ]; then
    mkdir -p "$PID_DIR"
    chown "$RUN_AS" "$PID_DIR"
    # The container's stdout/stderr pipes belong to root: nginx opens /dev/stdout for its access log.
    chown "$RUN_AS" /proc/self/fd/1 /proc/self/fd/2 2>/dev/null || true
    caps="--inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service"
    # Without that capability in the container's bounding set (cap_drop: ALL), ports >= 1024 only.
    setpriv $caps true 2>/dev/null || caps=""
    # shellcheck disable=SC2086 # caps is a list of options
    exec setpriv --reuid="${RUN_AS%%:*}" --regid="${RUN_AS##*:}" --clear-groups $caps -- "$0" "$@"
fi

log() {
    echo "proxy-watch: $*" >&2
}

fingerprint() {
    # shellcheck disable=SC2086 # LUA_DIRS is a list
    find "$CONF_DIR" $LUA_DIRS -maxdepth 1 -type f ! -name '.*' ! -name routes.json 2>/dev/null \
        | sort | while read -r f; do cksum "$f"; done | cksum
}

watch_files() {
    # running: the files nginx serves; seen: the files last looked at.
    running=$(fingerprint)
    seen=$running
    log "watching $CONF_DIR and $LUA_DIRS every ${INTERVAL}s"
    while sleep "$INTERVAL"; do
        now=$(fingerprint)
        [ "$now" = "$seen" ] && continue
        # The router writes its files one after the other: wait until two readings agree.
        while sleep 0.2; do
            settled=$(fingerprint)
            [ "$settled" = "$now" ] && break
            now=$settled
        done
        seen=$now
        # Back to what runs (the router restored the previous files): nothing to do.
        [ "$now" = "$running" ] && continue
        if out=$(nginx -t 2>&1); then
            log "config changed; reloading"
            if nginx -s reload; then running=$now; else log "nginx -s reload failed"; fi
        else
            log "config changed but nginx -t failed; keeping the running config: $out"
        fi
    done
}

case "${ROUTER__WEBSERVER__AUTO_RELOAD_CONFIG:-false}" in
    true | True | TRUE | 1 | yes | on) watch_files & ;;
esac

if [ "$#" -eq 0 ]; then
    set -- nginx -g 'daemon off;'
fi
exec "$@"
