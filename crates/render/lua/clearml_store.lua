-- The routing table store: loads routes.json into the lua_shared_dict every worker reads, so a
-- task starting or stopping changes data only and never reloads nginx. Worker 0 polls the file.
-- The file is data: decoded with cjson and checked entry by entry (clearml_rules), never run.
--
-- Keys of the shared dict: "<route id>" -> "<host> <port>" (plus " keep" when the task serves
-- under /service/<id>/ itself), "s:<name>" -> a static route (JSON), "p:<path prefix>" and
-- "h:<host>" -> the static route's name.

local cjson = require("cjson.safe")
local rules = require("clearml_rules")

local _M = {}

local routes = ngx.shared.clearml_routes
local state = ngx.shared.clearml_router_state

local routes_file = nil
local last_raw = nil

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then
        return nil, err
    end
    local raw = f:read("*a")
    f:close()
    return raw
end

-- The dict values, from the entries `rules.parse` kept.
local function dict_entries(parsed)
    local entries = {}
    for id, route in pairs(parsed.routes) do
        entries[id] = route.host .. " " .. route.port .. (route.strip_prefix and "" or " keep")
    end
    for name, route in pairs(parsed.statics) do
        route.secure = parsed.secure_cookies
        entries["s:" .. name] = cjson.encode(route)
    end
    for prefix, name in pairs(parsed.paths) do
        entries["p:" .. prefix] = name
    end
    for host, name in pairs(parsed.hosts) do
        entries["h:" .. host] = name
    end
    return entries
end

-- Puts `parsed` in the dict: new entries first, then the stale ones are deleted, so a request
-- never sees a half-empty table. Returns how many routes and static routes are stored.
local function store(parsed)
    local entries = dict_entries(parsed)
    -- Stored entries by kind: "route" (route ids have no ':'), "s", "p", "h".
    local stored = { route = 0, s = 0 }
    for key, value in pairs(entries) do
        local ok, err = routes:set(key, value)
        if ok then
            local kind = key:match("^(%a):") or "route"
            stored[kind] = (stored[kind] or 0) + 1
        else
            entries[key] = nil
            ngx.log(ngx.ERR, "clearml router: cannot store ", key, ": ", err)
        end
    end
    for _, key in ipairs(routes:get_keys(0)) do
        if not entries[key] then
            routes:delete(key)
        end
    end
    return stored.route, stored.s
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
    local parsed, why = rules.read(raw)
    if not parsed then
        state:set("error", "routing table refused (" .. why .. "); kept the previous one")
        return false
    end
    local count, static_count = store(parsed)
    state:set("static_count", static_count)
    state:set("version", parsed.version)
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
    last_raw = nil
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

-- What the proxy serves now: version, route counts and the last load error.
function _M.status()
    return {
        routes_version = state:get("version") or "",
        routes = state:get("count") or 0,
        error = state:get("error"),
    }
end

---------------------------------------------------------------------------------------------
-- Lookups for the request phases.

-- The task endpoint of a route id: host, port, keep_prefix; nil if there is none.
function _M.route(id)
    local value = rules.route_id(id) and routes:get(id)
    if not value then
        return nil
    end
    local host, port, keep = value:match("^(%S+) (%d+) ?(%a*)$")
    return host, tonumber(port), keep == "keep"
end

-- A static route: { prefix, targets = {"<ip> <port>"}, load_balanced, public, members, secure }.
function _M.static_route(name)
    local raw = routes:get("s:" .. name)
    local route = raw and cjson.decode(raw)
    return type(route) == "table" and route or nil
end

-- The static route that owns every path of `host`, if any.
function _M.static_for_host(host)
    return routes:get("h:" .. (host or ""))
end

-- The static route whose path prefix is exactly `prefix`, if any.
function _M.static_for_path(prefix)
    return routes:get("p:" .. prefix)
end

-- Whether static route `name` still lists `target` (a relayed websocket closes once not).
function _M.static_serves(name, target)
    local route = _M.static_route(name)
    for _, t in ipairs(route and route.targets or {}) do
        if t == target then
            return true
        end
    end
    return false
end

return _M
