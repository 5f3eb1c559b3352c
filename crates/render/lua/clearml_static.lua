-- Static routes: operator-defined endpoints served at a path prefix or on a subdomain host, with
-- access control (public, or a login plus group membership) and, for load-balanced routes,
-- client affinity through a cookie.

local auth = require("clearml_auth")
local pages = require("clearml_pages")
local ratelimit = require("clearml_ratelimit")
local store = require("clearml_store")

local _M = {}

local state = ngx.shared.clearml_router_state

-- Longest segment-wise prefix of `path` that `lookup` knows (/demo serves /demo and /demo/...,
-- not /demox): the prefix and what lookup returned, or nil.
function _M.longest_prefix(path, lookup)
    local candidate = path
    for _ = 1, 64 do
        if candidate == nil or candidate == "" then
            return nil
        end
        local found = lookup(candidate)
        if found then
            return candidate, found
        end
        candidate = candidate:match("^(.*)/[^/]*$")
    end
    return nil
end

-- True if the path part of raw URI `uri` has a `.` or `..` segment, also percent-encoded or
-- behind an encoded slash or a backslash: refused before any route is chosen, so that
-- /service/<A>/../<B>/ cannot reach A as /../B/ (nginx matches locations on the decoded URI,
-- the routes use the raw one).
function _M.has_dot_segment(uri)
    -- A dot segment needs a '.', literal or percent-encoded: most URIs have neither.
    if not uri:find(".", 1, true) and not uri:find("%", 1, true) then
        return false
    end
    local path = uri:match("^[^?#]*"):gsub("%%2[eE]", "."):gsub("%%2[fF]", "/"):gsub("%%5[cC]", "/"):gsub("\\", "/")
    for segment in (path .. "/"):gmatch("([^/]*)/") do
        if segment == "." or segment == ".." then
            return true
        end
    end
    return false
end

-- `members` lists user ids and names; an empty id or name never matches.
function _M.is_member(members, user_id, user_name)
    for _, m in ipairs(members) do
        if (user_id ~= "" and m == user_id) or (user_name ~= "" and m == user_name) then
            return true
        end
    end
    return false
end

-- The cookie value naming `target` of route `name`: not the address itself.
function _M.affinity_key(name, target)
    return ngx.md5(name .. "|" .. target):sub(1, 20)
end

-- Cookie names allow no '-'.
function _M.cookie_name(name)
    return "clearml_affinity_" .. name:gsub("-", "_")
end

function _M.cookie_attributes(route)
    local attrs = "; Path=" .. (route.prefix ~= "" and route.prefix or "/") .. "; HttpOnly; SameSite=Lax"
    if route.secure then
        attrs = attrs .. "; Secure"
    end
    return attrs
end

-- The index of the target whose affinity key is `cookie`, if it is still listed.
function _M.affine_target(name, targets, cookie)
    if not cookie then
        return nil
    end
    for i, t in ipairs(targets) do
        if _M.affinity_key(name, t) == cookie then
            return i
        end
    end
    return nil
end

-- Picks a target. Load balanced: a client with a valid affinity cookie keeps its target while
-- that target is listed; otherwise round robin, and the cookie is (re)set. A target joining
-- moves nobody; a target leaving moves only the clients whose cookie named it.
function _M.pick_target(name, route)
    local targets = route.targets
    if not route.load_balanced or #targets == 1 then
        return 1
    end
    local cookie_name = _M.cookie_name(name)
    local kept = _M.affine_target(name, targets, ngx.var["cookie_" .. cookie_name])
    if kept then
        return kept
    end
    local n = state:incr("rr:" .. name, 1, 0) or 0
    local i = (n % #targets) + 1
    _M.add_response_cookie(cookie_name .. "=" .. _M.affinity_key(name, targets[i]) .. _M.cookie_attributes(route))
    return i
end

-- Serves static route `name`: access checked, the path prefix stripped like /service/<id>, a
-- target picked (the websocket relay or the balancer connects to it).
function _M.serve(name, prefix, rest)
    local route = store.static_route(name)
    if not route then
        return pages.not_found()
    end
    -- Before the login check: a flood never reaches ClearML.
    if route.rate_limit then
        ratelimit.check("s:" .. name, route.rate_limit)
    end
    if route.public then
        auth.strip_credentials()
    else
        auth.check(name)
        if route.members ~= nil and auth.enabled() and not ngx.ctx.clearml_endpoint_grant then
            if not _M.is_member(route.members, ngx.var.clearml_user_id or "", ngx.var.clearml_user_name or "") then
                return pages.forbidden()
            end
        end
    end
    if prefix ~= "" and (rest == "" or rest:sub(1, 1) == "?") then
        return ngx.redirect(prefix .. "/" .. rest, ngx.HTTP_MOVED_PERMANENTLY)
    end
    if #route.targets == 0 then
        return pages.no_target()
    end
    local i = _M.pick_target(name, route)
    ngx.var.clearml_upstream_uri = rest
    ngx.var.clearml_route_prefix = prefix
    local upgrade = ngx.var.http_upgrade
    if upgrade and upgrade:lower() == "websocket" then
        -- Websockets of static routes are relayed in Lua, which can close them when the route
        -- is disabled or deleted (a proxied connection is out of Lua's reach).
        ngx.var.clearml_static_name = name
        ngx.var.clearml_static_peer = route.targets[i]
        return ngx.exec("@clearml_static_websocket")
    end
    local host, port = route.targets[i]:match("^(%S+) (%d+)$")
    local ctx = ngx.ctx
    ctx.clearml_host = host
    ctx.clearml_port = tonumber(port)
    ctx.clearml_static = { name = name, targets = route.targets, first = i, tries = 0 }
end

-- access_by_lua for every path but /service/: the route of this host, else the longest static
-- path prefix, else 404.
function _M.access()
    local uri = ngx.var.request_uri
    if _M.has_dot_segment(uri) then
        return pages.bad_path()
    end
    local host_route = store.static_for_host(ngx.var.host)
    if host_route then
        return _M.serve(host_route, "", uri)
    end
    local prefix, name = _M.longest_prefix(uri:match("^[^?]*"), store.static_for_path)
    if prefix then
        return _M.serve(name, prefix, uri:sub(#prefix + 1))
    end
    return pages.not_found()
end

-- Adds a Set-Cookie to the response. Set in the access phase, it is sent next to the target's
-- own cookies (nginx appends the upstream's headers), so no header filter runs per request.
function _M.add_response_cookie(cookie)
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

return _M
