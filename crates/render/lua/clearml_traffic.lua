-- Traffic per route, for the router's windows, charts and autoscaling signal. The log phase adds
-- each request to this worker's own table (no shared memory, no lock per request); a timer moves
-- every finished second into the shared dict once a second: one entry per second and worker,
-- expiring after RETENTION seconds. The router reads them on the control listener.

local cjson = require("cjson.safe")
local store = require("clearml_store")

local _M = {}

local traffic = ngx.shared.clearml_traffic
local totals = ngx.shared.clearml_requests

-- Seconds an entry is kept: the longest window (300 s) plus slack for the router's cadence.
_M.RETENTION = 330
-- Upper bounds (seconds) of the latency histogram's buckets; a last bucket holds the rest.
_M.BOUNDS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local BOUNDS = _M.BOUNDS
local LAST = #BOUNDS + 1

-- This worker's counts: the second being filled and the finished ones not flushed yet.
local second, current, finished = -1, {}, {}

-- Route keys of static routes ("static/<name>": no task id has a '/'), built once per name.
local static_keys = setmetatable({}, {
    __index = function(keys, name)
        local key = "static/" .. name
        keys[name] = key
        return key
    end,
})

-- "host:port" ("[v6]:port") of a target, built once per address (reset when it grows large).
local addresses, address_count = {}, 0
local function address(host, port)
    local ports = addresses[host]
    local name = ports and ports[port]
    if name then
        return name
    end
    if address_count > 4096 then
        addresses, address_count = {}, 0
    end
    ports = addresses[host] or {}
    addresses[host] = ports
    name = (host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port
    ports[port] = name
    address_count = address_count + 1
    return name
end

local function rotate(now)
    if next(current) ~= nil then
        finished[#finished + 1] = { second, current }
    end
    second, current = now, {}
end

local floor = math.floor

-- Adds one request of route `key` that ended at `now` (ngx.now()) and took `seconds`; returns
-- the route's counts.
local function add(key, status, now, seconds)
    now = floor(now)
    if now ~= second then
        rotate(now)
    end
    local r = current[key]
    if r == nil then
        -- n requests, e errors (5xx), t seconds summed, h latency histogram, g per target.
        r = { n = 0, e = 0, t = 0, h = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, g = {} }
        current[key] = r
    end
    r.n = r.n + 1
    if status >= 500 then
        r.e = r.e + 1
    end
    r.t = r.t + seconds
    local i = 1
    while i < LAST and seconds > BOUNDS[i] do
        i = i + 1
    end
    r.h[i] = r.h[i] + 1
    return r
end

-- Target counts: requests sent to it and those that failed there.
local function add_target(r, target, failed)
    local g = r.g[target]
    if g == nil then
        g = { 0, 0 }
        r.g[target] = g
    end
    g[1] = g[1] + 1
    if failed then
        g[2] = g[2] + 1
    end
end

-- The addresses of $upstream_addr ("a:1, b:2 : c:3"), in order.
function _M.upstream_addresses(list)
    local out = {}
    for a in (list or ""):gmatch("[^%s,]+") do
        if a ~= ":" then
            out[#out + 1] = a
        end
    end
    return out
end

-- log_by_lua of the proxied locations.
function _M.record()
    local ctx = ngx.ctx
    local key = ctx.clearml_route
    local attempt
    if key == nil then
        attempt = ctx.clearml_static
        if attempt == nil then
            return
        end
        key = static_keys[attempt.name]
    end
    local status = ngx.status
    local now = ngx.now()
    local r = add(key, status, now, now - ngx.req.start_time())
    local host = ctx.clearml_host
    if host then
        add_target(r, address(host, ctx.clearml_port), status >= 500)
    end
    if attempt and attempt.tries > 1 then
        -- The balancer moved on: every address tried before the last one refused.
        local tried = _M.upstream_addresses(ngx.var.upstream_addr)
        for i = 1, #tried - 1 do
            add_target(r, tried[i], true)
        end
    end
end

-- The route of a request that reached the error page (ngx.ctx is gone after the internal
-- redirect; the variables set in access remain).
local function unavailable_route()
    local var = ngx.var
    local prefix = var.clearml_route_prefix or ""
    local id = prefix:match("^/service/(.+)$")
    if id then
        return id
    end
    local name
    if prefix ~= "" then
        name = store.static_for_path(prefix)
    else
        name = store.static_for_host(var.host)
    end
    return name and static_keys[name]
end

-- log_by_lua of the error page of the proxied locations (the target failed: 502/504).
function _M.record_unavailable()
    local key = unavailable_route()
    if not key then
        return
    end
    local now = ngx.now()
    local r = add(key, ngx.status, now, now - ngx.req.start_time())
    for _, a in ipairs(_M.upstream_addresses(ngx.var.upstream_addr)) do
        add_target(r, a, true)
    end
end

-- Moves this worker's finished seconds (all of them with `all`) into the shared dict and the
-- totals per route.
function _M.flush(all)
    local now = ngx.time()
    if all or second < now then
        rotate(now)
    end
    local pid = ngx.worker.pid()
    for _, entry in ipairs(finished) do
        local s, routes = entry[1], entry[2]
        for key, r in pairs(routes) do
            totals:incr(key, r.n, 0)
        end
        local ok, err = traffic:set(s .. "|" .. pid, cjson.encode(routes), _M.RETENTION)
        if not ok then
            ngx.log(ngx.WARN, "clearml traffic: cannot keep second ", s, ": ", err)
        end
    end
    finished = {}
end

-- init_worker_by_lua: flush once a second, and once more when the worker exits.
function _M.start()
    local ok, err = ngx.timer.every(1, function(premature)
        _M.flush(premature)
    end)
    if not ok then
        ngx.log(ngx.ERR, "clearml traffic: cannot start the flush timer: ", err)
    end
end

-- Requests per route since the proxy started (flushed seconds).
function _M.totals()
    local counts = {}
    for _, key in ipairs(totals:get_keys(0)) do
        counts[key] = totals:get(key)
    end
    return counts
end

-- The kept entries of seconds >= `since`, as JSON texts.
function _M.entries(since)
    local out = {}
    for _, k in ipairs(traffic:get_keys(0)) do
        local s = tonumber(k:match("^(%d+)|"))
        local v = s and s >= since and traffic:get(k)
        if v then
            out[#out + 1] = '{"second":' .. s .. ',"routes":' .. v .. "}"
        end
    end
    return out
end

-- content_by_lua of /__clearml_router/traffic?since=<epoch second>: the proxy's clock, the
-- histogram bounds and one entry per second and worker (the router adds the workers up).
function _M.serve()
    local since = tonumber(ngx.var.arg_since) or 0
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Cache-Control"] = "no-store"
    ngx.say('{"now":', ngx.time(), ',"bounds":', cjson.encode(BOUNDS), ',"seconds":[',
        table.concat(_M.entries(since), ","), "]}")
end

return _M
