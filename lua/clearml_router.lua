-- ClearML gateway routing, run inside the proxy (nginx + lua-nginx-module).
--
-- The router writes the routing table as JSON (routes.json); this module loads it into a
-- lua_shared_dict and routes /service/<route id>/ requests to the task's address from there, so
-- a task starting or stopping changes data only and never reloads nginx. Worker 0 polls the file;
-- every worker reads the shared dict. The table is data: it is decoded with cjson and every entry
-- is checked again here, never evaluated as code.

local cjson = require("cjson.safe")
local balancer = require("ngx.balancer")
local auth = require("clearml_auth")
local pages = require("clearml_pages")

local _M = {}

local routes = ngx.shared.clearml_routes
local state = ngx.shared.clearml_router_state
local requests = ngx.shared.clearml_requests

local MAX_ROUTE_ID = 160
local routes_file = nil
local last_raw = nil

local function valid_route_id(id)
    return type(id) == "string" and #id <= MAX_ROUTE_ID and id:match("^[%w][%w_%-]*$") ~= nil
end

local function valid_host(host)
    if type(host) ~= "string" or #host > 45 or #host == 0 then
        return false
    end
    return host:match("^[%d%.]+$") ~= nil or host:match("^[%x:%.]+$") ~= nil
end

local function valid_port(port)
    return type(port) == "number" and port >= 1 and port <= 65535 and port % 1 == 0
end

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then
        return nil, err
    end
    local raw = f:read("*a")
    f:close()
    return raw
end

-- Reads the routing table file into the shared dict. A file that cannot be read or decoded
-- leaves the current routes untouched: the last good table keeps serving.
local function load_file()
    local raw, err = read_file(routes_file)
    if not raw then
        state:set("error", "cannot read routing table: " .. tostring(err))
        return false
    end
    if raw == last_raw then
        return true
    end
    local doc = cjson.decode(raw)
    if type(doc) ~= "table" or type(doc.version) ~= "string" or type(doc.routes) ~= "table" then
        state:set("error", "routing table is not valid JSON of the expected shape; kept the previous one")
        return false
    end
    local keep, count = {}, 0
    for id, route in pairs(doc.routes) do
        if valid_route_id(id) and type(route) == "table" and valid_host(route.host) and valid_port(route.port) then
            local ok, set_err = routes:set(id, route.host .. " " .. route.port)
            if ok then
                keep[id] = true
                count = count + 1
            else
                ngx.log(ngx.ERR, "clearml router: cannot store route ", id, ": ", set_err)
            end
        else
            ngx.log(ngx.WARN, "clearml router: skipped an invalid routing table entry")
        end
    end
    for _, id in ipairs(routes:get_keys(0)) do
        if not keep[id] then
            routes:delete(id)
        end
    end
    state:set("version", doc.version)
    state:set("count", count)
    state:delete("error")
    last_raw = raw
    return true
end

-- Loads under a lock shared by all workers: the file is read inside the lock, so whichever
-- worker loads last has read the newest file, and an older read can never overwrite a newer one.
-- `wait` false (the timer): skip if another worker is loading right now.
function _M.load(wait)
    for _ = 1, (wait and 200 or 1) do
        if state:add("load_lock", true, 5) then
            local ok, result = pcall(load_file)
            state:delete("load_lock")
            if not ok then
                state:set("error", "routing table load failed: " .. tostring(result))
                return false
            end
            return result
        end
        if wait then
            ngx.sleep(0.005)
        end
    end
    return false
end

-- init_by_lua: load synchronously so the first request after (re)start already has routes.
function _M.init(path)
    routes_file = path
    state:delete("load_lock")
    load_file()
end

-- init_worker_by_lua: one poller per nginx instance (worker 0) keeps the shared dict current.
function _M.start_poller(interval)
    local id = ngx.worker.id()
    if id ~= nil and id ~= 0 then
        return
    end
    local ok, err = ngx.timer.every(interval, function(premature)
        if not premature then
            _M.load(false)
        end
    end)
    if not ok then
        ngx.log(ngx.ERR, "clearml router: cannot start the routing table poller: ", err)
    end
end

local function error_page(status, code, title, message)
    return pages.send(status, code, title, message)
end

function _M.not_found()
    return error_page(404, "no_route", "No such endpoint",
        "No ClearML task serves this address. The task may have stopped, or its endpoint was never requested.")
end

function _M.unavailable()
    return error_page(502, "task_unreachable", "Task not answering",
        "The task's endpoint is registered, but the task does not answer on its port yet. Retry in a moment.")
end

-- access_by_lua for /service/: pick the route, strip the /service/<id> prefix from the raw URI
-- (kept byte for byte, so encoded characters reach the task unchanged).
function _M.access()
    -- Login first, so that unauthenticated clients cannot probe which task ids exist.
    auth.check()
    local uri = ngx.var.request_uri
    local id, rest = uri:match("^/service/([^/?]*)(.*)$")
    if not valid_route_id(id) then
        return _M.not_found()
    end
    local peer = routes:get(id)
    if not peer then
        return _M.not_found()
    end
    if rest == "" or rest:sub(1, 1) == "?" then
        return ngx.redirect("/service/" .. id .. "/" .. rest, ngx.HTTP_MOVED_PERMANENTLY)
    end
    local host, port = peer:match("^(%S+) (%d+)$")
    local ctx = ngx.ctx
    ctx.clearml_route = id
    ctx.clearml_host = host
    ctx.clearml_port = tonumber(port)
    ngx.var.clearml_upstream_uri = rest
    ngx.var.clearml_route_prefix = "/service/" .. id
end

-- balancer_by_lua: connect to the address access() picked for this request.
function _M.balance()
    local ctx = ngx.ctx
    local host = ctx.clearml_host
    if host:find(":", 1, true) then
        -- IPv6 literals need brackets here.
        host = "[" .. host .. "]"
    end
    local ok, err = balancer.set_current_peer(host, ctx.clearml_port)
    if not ok then
        ngx.log(ngx.ERR, "clearml router: cannot set peer: ", err)
        return ngx.exit(502)
    end
end

-- log_by_lua: count requests per route (read by the router for its metrics).
function _M.count()
    local id = ngx.ctx.clearml_route
    if id then
        requests:incr(id, 1, 0)
    end
end

local function request_counts()
    local counts = {}
    for _, id in ipairs(requests:get_keys(1024)) do
        counts[id] = requests:get(id)
    end
    return counts
end

-- The control endpoint: which structural config and routing table this proxy serves now.
-- A POST loads the routing table first, so the router need not wait for the poller.
function _M.status(config_hash)
    if ngx.req.get_method() == "POST" then
        _M.load(true)
    end
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Cache-Control"] = "no-store"
    ngx.say(cjson.encode({
        config_hash = config_hash,
        routes_version = state:get("version") or "",
        routes = state:get("count") or 0,
        error = state:get("error"),
        auth = auth.enabled() and "enabled" or "disabled",
        auth_stats = auth.stats(),
        requests = request_counts(),
    }))
end

return _M
