-- /service/<route id>/ routing and the balancer, run inside the proxy (nginx + lua-nginx-module).
-- Access picks the task's address from the routing table store; the balancer connects to it
-- (and for static routes with several targets, moves on to the next one when a target refuses).

local balancer = require("ngx.balancer")
local auth = require("clearml_auth")
local pages = require("clearml_pages")
local ratelimit = require("clearml_ratelimit")
local static = require("clearml_static")
local store = require("clearml_store")

local _M = {}

-- `/service/<id><rest>`: the id and the rest (path and query, kept byte for byte so encoded
-- characters reach the task unchanged); nil if the URI is not of that form.
function _M.split_service_uri(uri)
    return uri:match("^/service/([^/?]*)(.*)$")
end

-- While this worker shuts down after a reload (it closes each connection once the response is
-- sent), tell keep-alive clients so, so that they open a new connection instead of sending their
-- next request into this one. Done in the access phase: a header filter phase would cost every
-- request several microseconds.
function _M.reconnect_hint()
    if ngx.worker.exiting() then
        ngx.header["Connection"] = "close"
    end
end

-- access_by_lua of the static routes' location.
function _M.static_access()
    _M.reconnect_hint()
    return static.access()
end

-- access_by_lua for /service/: pick the route, strip the /service/<id> prefix from the raw URI.
function _M.access()
    _M.reconnect_hint()
    if static.has_dot_segment(ngx.var.request_uri) then
        return pages.bad_path()
    end
    -- A subdomain static route owns every path of its host, /service/ included.
    local host_route = store.static_for_host(ngx.var.host)
    if host_route then
        return static.serve(host_route, "", ngx.var.request_uri)
    end
    local uri = ngx.var.request_uri
    local id, rest = _M.split_service_uri(uri)
    local host, port, keep_prefix, limit = store.route(id)
    -- The rate limit before the login check, so a flood never reaches ClearML; then the login,
    -- before the 404, so that unauthenticated clients cannot probe which task ids exist.
    limit = limit and ratelimit.parse(limit)
    if limit then
        ratelimit.check("t:" .. id, limit)
    end
    auth.check(id)
    if not host then
        return pages.not_found()
    end
    if rest == "" or rest:sub(1, 1) == "?" then
        return ngx.redirect("/service/" .. id .. "/" .. rest, ngx.HTTP_MOVED_PERMANENTLY)
    end
    local ctx = ngx.ctx
    ctx.clearml_route = id
    ctx.clearml_host = host
    ctx.clearml_port = port
    -- The task serves under /service/<id>/ itself (e.g. Jupyter's base_url): the full URI.
    ngx.var.clearml_upstream_uri = keep_prefix and uri or rest
    ngx.var.clearml_route_prefix = "/service/" .. id
end

-- The target for try number `tries` (0: the first) of a static route whose first pick was
-- `first`: the next ones in order, wrapping around.
function _M.retry_target(targets, first, tries)
    return targets[((first - 1 + tries) % #targets) + 1]
end

-- IPv6 literals need brackets in set_current_peer.
function _M.peer_host(host)
    if host:find(":", 1, true) then
        return "[" .. host .. "]"
    end
    return host
end

-- balancer_by_lua: connect to the address access picked for this request.
function _M.balance()
    local ctx = ngx.ctx
    local attempt = ctx.clearml_static
    if attempt and #attempt.targets > 1 then
        -- A target that refuses the connection: try the next one, so a target that went away
        -- before the router noticed fails no request.
        if attempt.tries == 0 then
            balancer.set_more_tries(#attempt.targets - 1)
        else
            local host, port = _M.retry_target(attempt.targets, attempt.first, attempt.tries):match("^(%S+) (%d+)$")
            ctx.clearml_host = host
            ctx.clearml_port = tonumber(port)
        end
        attempt.tries = attempt.tries + 1
    end
    local ok, err = balancer.set_current_peer(_M.peer_host(ctx.clearml_host), ctx.clearml_port)
    if not ok then
        ngx.log(ngx.ERR, "clearml router: cannot set peer: ", err)
        return ngx.exit(502)
    end
end

return _M
