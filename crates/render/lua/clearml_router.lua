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
local load_static
local serve_static

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

local function valid_static_name(name)
    return type(name) == "string" and #name <= 63 and name:match("^[a-z0-9][a-z0-9%-]*$") ~= nil
end

local function valid_prefix(prefix)
    return prefix == "" or (type(prefix) == "string" and #prefix <= 200 and prefix:match("^/[%w%._~%-/]+$") ~= nil)
end

local function valid_static_host(host)
    return type(host) == "string" and #host <= 253 and host:match("^[%w%.%-%[%]:]+$") ~= nil
end

-- Static routes: "s:<name>" holds the route (JSON, re-encoded from checked fields only),
-- "p:<path prefix>" and "h:<host>" map to the name. Returns how many routes were stored.
load_static = function(static, keep)
    if type(static) ~= "table" or type(static.routes) ~= "table" then
        return 0
    end
    local secure = static.secure_cookies == true
    local count = 0
    for name, route in pairs(static.routes) do
        local ok = valid_static_name(name) and type(route) == "table" and valid_prefix(route.prefix)
            and type(route.targets) == "table"
        local targets = {}
        if ok then
            for _, t in ipairs(route.targets) do
                local host, port
                if type(t) == "string" then
                    host, port = t:match("^(%S+) (%d+)$")
                end
                if host and valid_host(host) and valid_port(tonumber(port)) then
                    targets[#targets + 1] = host .. " " .. port
                else
                    ok = false
                end
            end
        end
        local members = nil
        if ok and route.members ~= nil then
            members = {}
            if type(route.members) ~= "table" then
                ok = false
            else
                for _, m in ipairs(route.members) do
                    if type(m) == "string" then
                        members[#members + 1] = m
                    end
                end
            end
        end
        if ok then
            local entry = cjson.encode({
                prefix = route.prefix,
                targets = targets,
                load_balanced = route.load_balanced == true,
                public = route.public == true,
                members = members,
                secure = secure,
            })
            if routes:set("s:" .. name, entry) then
                keep["s:" .. name] = true
                count = count + 1
            end
        else
            ngx.log(ngx.WARN, "clearml router: skipped an invalid static route entry")
        end
    end
    for kind, map in pairs({ p = static.paths, h = static.hosts }) do
        if type(map) == "table" then
            for key, name in pairs(map) do
                local good = kind == "p" and valid_prefix(key) or kind == "h" and valid_static_host(key)
                if good and key ~= "" and valid_static_name(name) and keep["s:" .. name] then
                    routes:set(kind .. ":" .. key, name)
                    keep[kind .. ":" .. key] = true
                end
            end
        end
    end
    return count
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
            local value = route.host .. " " .. route.port
            if route.strip_prefix == false then
                value = value .. " keep"
            end
            local ok, set_err = routes:set(id, value)
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
    state:set("static_count", load_static(doc.static, keep))
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

local function forbidden()
    return error_page(403, "forbidden", "Not allowed",
        "Your ClearML user is not in a group allowed to use this endpoint.")
end

local function no_target()
    return error_page(503, "no_target", "Endpoint not in use",
        "This route is defined, but no task or target serves it right now. Retry in a moment.")
end

local function is_member(members, user_id, user_name)
    for _, m in ipairs(members) do
        if (user_id ~= "" and m == user_id) or (user_name ~= "" and m == user_name) then
            return true
        end
    end
    return false
end

local function affinity_key(name, target)
    return ngx.md5(name .. "|" .. target):sub(1, 20)
end

-- Picks a target. Load balanced: a client with a valid affinity cookie keeps its target while
-- that target is listed; otherwise round robin, and the cookie is (re)set. A target joining
-- moves nobody; a target leaving moves only the clients whose cookie named it.
local function pick_target(name, route)
    local targets = route.targets
    if not route.load_balanced or #targets == 1 then
        return 1
    end
    local cookie_name = "clearml_affinity_" .. name:gsub("-", "_")
    local cookie = ngx.var["cookie_" .. cookie_name]
    if cookie then
        for i, t in ipairs(targets) do
            if affinity_key(name, t) == cookie then
                return i
            end
        end
    end
    local n = state:incr("rr:" .. name, 1, 0) or 0
    local i = (n % #targets) + 1
    local attrs = "; Path=" .. (route.prefix ~= "" and route.prefix or "/") .. "; HttpOnly; SameSite=Lax"
    if route.secure then
        attrs = attrs .. "; Secure"
    end
    ngx.ctx.clearml_set_cookie = cookie_name .. "=" .. affinity_key(name, targets[i]) .. attrs
    return i
end

-- Serves a static route: access (public, or a login plus group membership), the path prefix
-- stripped like /service/<id>, a target picked.
serve_static = function(name, prefix, rest)
    local raw = routes:get("s:" .. name)
    local route = raw and cjson.decode(raw)
    if type(route) ~= "table" then
        return _M.not_found()
    end
    if not route.public then
        auth.check()
        if route.members ~= nil and auth.enabled() then
            if not is_member(route.members, ngx.var.clearml_user_id or "", ngx.var.clearml_user_name or "") then
                return forbidden()
            end
        end
    end
    if prefix ~= "" and (rest == "" or rest:sub(1, 1) == "?") then
        return ngx.redirect(prefix .. "/" .. rest, ngx.HTTP_MOVED_PERMANENTLY)
    end
    if #route.targets == 0 then
        return no_target()
    end
    local i = pick_target(name, route)
    local upgrade = ngx.var.http_upgrade
    if upgrade and upgrade:lower() == "websocket" then
        -- Websockets of static routes are relayed in Lua, which can close them when the route
        -- is disabled or deleted (a proxied connection is out of Lua's reach).
        ngx.var.clearml_static_name = name
        ngx.var.clearml_static_peer = route.targets[i]
        ngx.var.clearml_upstream_uri = rest
        ngx.var.clearml_route_prefix = prefix
        return ngx.exec("@clearml_static_websocket")
    end
    local host, port = route.targets[i]:match("^(%S+) (%d+)$")
    local ctx = ngx.ctx
    ctx.clearml_host = host
    ctx.clearml_port = tonumber(port)
    ctx.clearml_static = { targets = route.targets, first = i, tries = 0 }
    ngx.var.clearml_upstream_uri = rest
    ngx.var.clearml_route_prefix = prefix
end

-- access_by_lua for every other path: the longest static path prefix that matches whole
-- segments (/demo serves /demo and /demo/..., not /demox), else 404.
function _M.static_access()
    local uri = ngx.var.request_uri
    local host_route = routes:get("h:" .. (ngx.var.host or ""))
    if host_route then
        return serve_static(host_route, "", uri)
    end
    local path = uri:match("^[^?]*")
    local candidate = path
    for _ = 1, 64 do
        if candidate == nil or candidate == "" then
            break
        end
        local name = routes:get("p:" .. candidate)
        if name then
            return serve_static(name, candidate, uri:sub(#candidate + 1))
        end
        candidate = candidate:match("^(.*)/[^/]*$")
    end
    return _M.not_found()
end

-- Hop-by-hop and credential headers not copied to the target of a relayed websocket.
local WS_SKIP = { ["x-forwarded-prefix"] = true, ["x-forwarded-for"] = true, ["x-forwarded-proto"] = true,
    ["x-forwarded-host"] = true, ["x-real-ip"] = true, ["x-clearml-user-id"] = true,
    ["x-clearml-user-name"] = true, ["x-clearml-company-id"] = true }

-- content_by_lua for @clearml_static_websocket: relays one websocket between the client and the
-- target chosen in access, and closes both sides once the route is no longer served (disabled,
-- deleted, or the target dropped), checked at least every second.
function _M.static_websocket()
    local name = ngx.var.clearml_static_name
    local peer = ngx.var.clearml_static_peer
    local host, port = peer:match("^(%S+) (%d+)$")
    local up = ngx.socket.tcp()
    up:settimeout(10000)
    local ok = up:connect(host, tonumber(port))
    if not ok then
        return _M.unavailable()
    end
    local lines = { ngx.req.get_method() .. " " .. ngx.var.clearml_upstream_uri .. " HTTP/1.1" }
    for key, value in pairs(ngx.req.get_headers(100, true)) do
        if not WS_SKIP[key:lower()] then
            if type(value) ~= "table" then
                value = { value }
            end
            for _, v in ipairs(value) do
                lines[#lines + 1] = key .. ": " .. v
            end
        end
    end
    lines[#lines + 1] = "X-Forwarded-Prefix: " .. ngx.var.clearml_route_prefix
    lines[#lines + 1] = "X-Forwarded-For: " .. ngx.var.remote_addr
    lines[#lines + 1] = "X-Forwarded-Proto: " .. ngx.var.scheme
    lines[#lines + 1] = "X-Forwarded-Host: " .. (ngx.var.http_host or "")
    for header, var in pairs({ ["X-ClearML-User-Id"] = "clearml_user_id", ["X-ClearML-User-Name"] = "clearml_user_name",
        ["X-ClearML-Company-Id"] = "clearml_company_id" }) do
        local v = ngx.var[var]
        if v and v ~= "" then
            lines[#lines + 1] = header .. ": " .. v
        end
    end
    if not up:send(table.concat(lines, "\r\n") .. "\r\n\r\n") then
        return _M.unavailable()
    end
    local head = up:receiveuntil("\r\n\r\n")()
    if not head then
        return _M.unavailable()
    end
    local down = ngx.req.socket(true)
    if not down then
        up:close()
        return ngx.exit(ngx.ERROR)
    end
    down:send(head .. "\r\n\r\n")
    local served = function()
        local raw = routes:get("s:" .. name)
        return raw ~= nil and raw:find("\"" .. peer .. "\"", 1, true) ~= nil
    end
    local done = false
    local function pipe(src, dst)
        src:settimeout(1000)
        while not done do
            local data, err = src:receiveany(65536)
            if data then
                if not dst:send(data) then
                    break
                end
            elseif err ~= "timeout" then
                break
            end
            if not served() then
                break
            end
        end
        done = true
    end
    local a = ngx.thread.spawn(pipe, up, down)
    local b = ngx.thread.spawn(pipe, down, up)
    ngx.thread.wait(a, b)
    done = true
    up:close()
    ngx.thread.kill(a)
    ngx.thread.kill(b)
    return ngx.exit(ngx.OK)
end

-- header_filter_by_lua: adds the affinity cookie next to the target's own cookies.
function _M.header_filter()
    local cookie = ngx.ctx.clearml_set_cookie
    if not cookie then
        return
    end
    local existing = ngx.header["Set-Cookie"]
    if existing == nil then
        ngx.header["Set-Cookie"] = cookie
    elseif type(existing) == "table" then
        existing[#existing + 1] = cookie
        ngx.header["Set-Cookie"] = existing
    else
        ngx.header["Set-Cookie"] = { existing, cookie }
    end
end

-- access_by_lua for /service/: pick the route, strip the /service/<id> prefix from the raw URI
-- (kept byte for byte, so encoded characters reach the task unchanged).
function _M.access()
    -- A subdomain static route owns every path of its host, /service/ included.
    local host_route = routes:get("h:" .. (ngx.var.host or ""))
    if host_route then
        return serve_static(host_route, "", ngx.var.request_uri)
    end
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
    local host, port, keep = peer:match("^(%S+) (%d+) ?(%a*)$")
    local ctx = ngx.ctx
    ctx.clearml_route = id
    ctx.clearml_host = host
    ctx.clearml_port = tonumber(port)
    -- "keep": the task serves under /service/<id>/ itself (e.g. Jupyter's base_url).
    ngx.var.clearml_upstream_uri = keep == "keep" and uri or rest
    ngx.var.clearml_route_prefix = "/service/" .. id
end

-- balancer_by_lua: connect to the address access() picked for this request.
function _M.balance()
    local ctx = ngx.ctx
    local static = ctx.clearml_static
    if static and #static.targets > 1 then
        -- A target that refuses the connection: try the next one, so a target that went away
        -- before the router noticed fails no request.
        if static.tries == 0 then
            balancer.set_more_tries(#static.targets - 1)
        else
            local t = static.targets[((static.first - 1 + static.tries) % #static.targets) + 1]
            local host, port = t:match("^(%S+) (%d+)$")
            ctx.clearml_host = host
            ctx.clearml_port = tonumber(port)
        end
        static.tries = static.tries + 1
    end
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
