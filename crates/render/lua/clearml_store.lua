-- The routing table store: loads routes.json into the lua_shared_dict every worker reads, so a
-- task starting or stopping changes data only and never reloads nginx. Worker 0 polls the file.
-- The file is data: decoded with cjson and checked entry by entry (clearml_rules), never run.
--
-- Keys of the shared dict: "<route id>" -> "<host> <port>" (plus " keep" when the task serves
-- under /service/<id>/ itself, then " rl:<rate>:<burst>:<key>" when it has a rate limit), "s:<name>" -> a static route (JSON), "p:<path prefix>" and
-- "h:<host>" -> the static route's name.

local cjson = require("cjson.safe")
local ffi = require("ffi")
local rules = require("clearml_rules")

local _M = {}

local routes = ngx.shared.clearml_routes
local state = ngx.shared.clearml_router_state

-- The text of the table the dict holds, with its version, so whichever worker loads next can
-- diff against it (each worker also keeps the text it stored itself, to skip the copy).
local texts = ngx.shared.clearml_routes_text

local routes_file = nil
-- The text this worker last stored and its version: the shared dict holds exactly its entries
-- while the dict's version is still this one (no other worker loaded since).
local last_raw = nil
local last_version = nil

ffi.cdef([[int memcmp(const void *a, const void *b, size_t n);]])

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then
        return nil, err
    end
    local raw = f:read("*a")
    f:close()
    return raw
end

local function route_value(route)
    local limit = route.rate_limit
    local value = route.host .. " " .. route.port .. (route.strip_prefix and "" or " keep")
    if limit then
        value = value .. " rl:" .. limit.rate .. ":" .. limit.burst .. ":" .. limit.key
    end
    return value
end

-- The dict values, from the entries `rules.parse` kept.
local function dict_entries(parsed)
    local entries = {}
    for id, route in pairs(parsed.routes) do
        entries[id] = route_value(route)
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

-- Sets `key` only when its value differs; returns 1 if the dict was written, 0 if not, nil on error.
local function put(key, value)
    if routes:get(key) == value then
        return 0
    end
    local ok, err = routes:set(key, value)
    if not ok then
        ngx.log(ngx.ERR, "clearml router: cannot store ", key, ": ", err)
        return nil
    end
    return 1
end

local function count_touched(n)
    state:incr("touched", n, 0)
end

-- Puts a whole parsed table in the dict, writing only changed values: new entries first, then
-- the stale ones are deleted, so a request never sees a half-empty table. Scans every key, so
-- it runs only when the text diff below cannot. Returns how many routes and static routes are stored.
local function store(parsed)
    local entries = dict_entries(parsed)
    -- Stored entries by kind: "route" (route ids have no ':'), "s", "p", "h".
    local stored = { route = 0, s = 0 }
    local touched = 0
    for key, value in pairs(entries) do
        local wrote = put(key, value)
        if wrote then
            touched = touched + wrote
            local kind = key:match("^(%a):") or "route"
            stored[kind] = (stored[kind] or 0) + 1
        else
            entries[key] = nil
        end
    end
    for _, key in ipairs(routes:get_keys(0)) do
        if not entries[key] then
            routes:delete(key)
            touched = touched + 1
        end
    end
    count_touched(touched)
    state:incr("full_loads", 1, 0)
    return stored.route, stored.s
end

---------------------------------------------------------------------------------------------
-- The text diff. The router writes one HTTP route per line between the lines `"routes":{` and
-- `},` (gateway_core::routes_file); two versions differ in a few lines when a few routes change.

local CHUNK = 4096
local NL = 10

-- How many bytes of `a` from offset `ia` equal those of `b` from `ib` (0-based offsets): memcmp
-- by chunks, then bytes, so an unchanged megabyte costs microseconds and allocates nothing.
local function common_prefix(a, ia, b, ib)
    local n = math.min(#a - ia, #b - ib)
    local pa, pb = ffi.cast("const uint8_t *", a) + ia, ffi.cast("const uint8_t *", b) + ib
    local i = 0
    while i + CHUNK <= n and ffi.C.memcmp(pa + i, pb + i, CHUNK) == 0 do
        i = i + CHUNK
    end
    while i < n and pa[i] == pb[i] do
        i = i + 1
    end
    return i
end

-- How many trailing bytes `a` and `b` share, at most `max`.
local function common_suffix(a, b, max)
    local pa, pb = ffi.cast("const uint8_t *", a) + #a, ffi.cast("const uint8_t *", b) + #b
    local i = 0
    while i + CHUNK <= max and ffi.C.memcmp(pa - i - CHUNK, pb - i - CHUNK, CHUNK) == 0 do
        i = i + CHUNK
    end
    while i < max and pa[-i - 1] == pb[-i - 1] do
        i = i + 1
    end
    return i
end

-- The layout of a file: its version, where its route lines start and the position of the
-- newline that ends them (before `},`); nil if the text is not in the line layout.
local function layout(raw)
    local version, body = raw:match('^{"version":("[0-9a-zA-Z_.-]*"),\n"routes":{\n()')
    local close = body and raw:find("\n},\n", body - 1, true)
    if not close then
        return nil
    end
    return cjson.decode(version), body, close
end

-- The route entries on the whole lines of `raw` from byte `first` to the newline at `last`:
-- id -> route, or false for an entry the rules refuse. nil if a line is not one route entry
-- followed by a comma (none after the last one, whose newline is at `close`): a text a full
-- decode would refuse is never half-applied.
local function route_lines(raw, first, last, close)
    local lines = {}
    for line, after in raw:sub(first, last):gmatch("([^\n]*)\n()") do
        local entry, comma = line:match("^(.-)(,?)$")
        local doc = (comma == "") == (first + after - 2 == close) and cjson.decode("{" .. entry .. "}")
        local id, value = next(type(doc) == "table" and doc or {})
        if not id or next(doc, id) ~= nil then
            return nil
        end
        lines[id] = rules.http_entry(id, value) or false
    end
    return lines
end

-- Applies the text `raw` as a change of the text `old` (whose entries the dict holds), touching
-- only the routes on lines that differ. Returns false when the change is not confined to route
-- lines (a static route, another layout) or the dict is full: the caller loads the whole file,
-- which also repairs a partial write.
function _M.apply_diff(old, raw)
    local _, old_body, old_close = layout(old)
    local version, body, close = layout(raw)
    if not (old_body and body) then
        return false
    end
    -- The common text around the change, shrunk to whole lines: the lines between differ.
    local prefix = common_prefix(old, old_body - 1, raw, body - 1)
    local suffix = common_suffix(old, raw, math.min(#old - old_body, #raw - body) + 1 - prefix)
    while prefix > 0 and raw:byte(body - 1 + prefix) ~= NL do
        prefix = prefix - 1
    end
    -- Both texts must have a newline just before the suffix (where they first differ from the
    -- end, only one of them may).
    local shift = #old - #raw
    local start = #raw - suffix + 1
    while start <= #raw and (raw:byte(start - 1) ~= NL or old:byte(start - 1 + shift) ~= NL) do
        start = start + 1
    end
    suffix = #raw - start + 1
    -- Only the last line (TCP, served by the stream module) changed: nothing to store here.
    local tcp_line, old_tcp_line = raw:find('\n"tcp":', close, true), old:find('\n"tcp":', old_close, true)
    if tcp_line and old_tcp_line and body - 1 + prefix >= tcp_line and old_body - 1 + prefix >= old_tcp_line then
        state:incr("diff_loads", 1, 0)
        state:set("version", version)
        return true
    end
    if #raw - suffix > close or #old - suffix > old_close then
        return false
    end
    local removed = route_lines(old, old_body + prefix, #old - suffix, old_close)
    local added = removed and route_lines(raw, body + prefix, #raw - suffix, close)
    if not added then
        return false
    end
    local count, touched = state:get("count") or 0, 0
    for id, route in pairs(added) do
        if route then
            local wrote = put(id, route_value(route))
            if wrote == nil then
                return false
            end
            touched = touched + wrote
            count = count + (removed[id] and 0 or 1)
        end
    end
    for id, route in pairs(removed) do
        if route and not added[id] then
            routes:delete(id)
            touched = touched + 1
            count = count - 1
        end
    end
    count_touched(touched)
    state:incr("diff_loads", 1, 0)
    state:set("count", count)
    state:set("version", version)
    return true
end

-- Reads the routing table file into the shared dict. A file that cannot be read or decoded
-- leaves the current routes untouched: the last good table keeps serving.
local function load_file()
    local raw, err = read_file(routes_file)
    if not raw then
        state:set("error", "cannot read routing table: " .. tostring(err))
        return false
    end
    local current = state:get("version")
    if raw == last_raw and current == last_version then
        return true
    end
    local old = current == last_version and last_raw
    if not old and current and texts:get("version") == current then
        old = texts:get("text")
    end
    if not (old and _M.apply_diff(old, raw)) then
        local parsed, why = rules.read(raw)
        if not parsed then
            state:set("error", "routing table refused (" .. why .. "); kept the previous one")
            return false
        end
        local count, static_count = store(parsed)
        state:set("static_count", static_count)
        state:set("version", parsed.version)
        state:set("count", count)
    end
    state:delete("error")
    last_raw = raw
    last_version = state:get("version")
    texts:delete("version")
    if texts:set("text", raw) then
        texts:set("version", last_version)
    end
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
    last_version = nil
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

-- How the table was kept current: dict entries written or deleted, loads done as a diff of
-- changed lines and loads of the whole file.
function _M.stats()
    return {
        touched = state:get("touched") or 0,
        diff_loads = state:get("diff_loads") or 0,
        full_loads = state:get("full_loads") or 0,
    }
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

-- The task endpoint of a route id: host, port, keep_prefix and its rate limit (the text after
-- "rl:", clearml_ratelimit reads it; nil: none); nil if there is none.
function _M.route(id)
    local value = rules.route_id(id) and routes:get(id)
    if not value then
        return nil
    end
    local host, port, rest = value:match("^(%S+) (%d+)(.*)$")
    if rest == "" then
        return host, tonumber(port), false, nil
    end
    return host, tonumber(port), rest:sub(1, 5) == " keep", rest:match(" rl:(.+)$")
end

-- Static routes this worker decoded, for the version they were decoded at: each is decoded
-- once per change per worker, not once per request. Callers must not modify them.
local statics = { version = nil, routes = {} }

-- A static route: { prefix, targets = {"<ip> <port>"}, load_balanced, public, members, secure }.
function _M.static_route(name)
    local version = state:get("version")
    if statics.version ~= version then
        statics = { version = version, routes = {} }
    end
    local route = statics.routes[name]
    if route == nil then
        local raw = routes:get("s:" .. name)
        route = raw and cjson.decode(raw)
        route = type(route) == "table" and route or false
        statics.routes[name] = route
    end
    return route or nil
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
