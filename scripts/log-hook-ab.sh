#!/usr/bin/env bash
# The per-request cost of the traffic log hook alone: real nginx + lua-nginx-module, one worker,
# interleaved wrk rounds on three identical proxied locations: no log hook, the former per-request
# shared-dict incr, and clearml_traffic.record (per-worker table, flushed once a second). Prints the
# worker's CPU microseconds per request (less sensitive than req/s to other jobs on the machine).
# Usage: scripts/log-hook-ab.sh [lua dir, default crates/render/lua]. Ports 21901-21904.
set -euo pipefail
LUA_SRC=${1:-crates/render/lua}
D=$(mktemp -d /tmp/log-hook-ab.XXXX); chmod 755 "$D"; mkdir -p "$D/lua" "$D/tmp"
cp "$LUA_SRC"/*.lua "$D/lua/"
cat > "$D/nginx.conf" <<CONF
worker_processes 1;
pid $D/nginx.pid;
error_log $D/error.log notice;
include /etc/nginx/modules-enabled/*.conf;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $D/tmp; proxy_temp_path $D/tmp; fastcgi_temp_path $D/tmp; uwsgi_temp_path $D/tmp; scgi_temp_path $D/tmp;
  lua_package_path "$D/lua/?.lua;;";
  lua_shared_dict clearml_routes 1m; lua_shared_dict clearml_routes_text 1m; lua_shared_dict clearml_router_state 1m;
  lua_shared_dict clearml_requests 4m; lua_shared_dict clearml_traffic 32m; lua_shared_dict clearml_auth 1m;
  init_worker_by_lua_block { require("clearml_traffic").start() }
  upstream backend { server 127.0.0.1:21901; keepalive 32; }
  server { listen 127.0.0.1:21901; access_log off; location / { return 200 "ok\n"; } }
  server { listen 127.0.0.1:21902; location / {
    access_by_lua_block { local c = ngx.ctx; c.clearml_route = "abc"; c.clearml_host = "127.0.0.1"; c.clearml_port = 21901 }
    proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://backend; } }
  server { listen 127.0.0.1:21903; location / {
    access_by_lua_block { local c = ngx.ctx; c.clearml_route = "abc"; c.clearml_host = "127.0.0.1"; c.clearml_port = 21901 }
    log_by_lua_block { local id = ngx.ctx.clearml_route; if id then ngx.shared.clearml_requests:incr(id, 1, 0) end }
    proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://backend; } }
  server { listen 127.0.0.1:21904; location / {
    access_by_lua_block { local c = ngx.ctx; c.clearml_route = "abc"; c.clearml_host = "127.0.0.1"; c.clearml_port = 21901 }
    log_by_lua_block { require("clearml_traffic").record() }
    proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://backend; } }
}
CONF
nginx -c "$D/nginx.conf"
trap 'kill $(cat $D/nginx.pid); rm -rf "$D"' EXIT
sleep 0.5
worker=$(pgrep -P "$(cat $D/nginx.pid)" | head -1)
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' /proc/$worker/stat; }
for round in 1 2 3 4 5; do
  for port in 21902 21903 21904; do
    before=$(cpu)
    n=$(wrk -t1 -c32 -d5s http://127.0.0.1:$port/ | awk '/requests in/ {print $1}')
    after=$(cpu)
    # CPU microseconds of the nginx worker per request (the backend's `return 200` included: same for all).
    echo "round $round port $port requests $n cpu_us_per_request $(python3 -c "print(round(($after-$before)/$tick*1e6/$n, 2))")"
  done
done
