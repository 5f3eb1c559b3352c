-- Control and status: the loopback status endpoint the router polls to confirm which structural
-- config and routing table this proxy serves (request counts come from clearml_traffic).

local cjson = require("cjson.safe")
local auth = require("clearml_auth")
local store = require("clearml_store")
local traffic = require("clearml_traffic")

local _M = {}

-- The status document.
function _M.report(config_hash)
    local served = store.status()
    return {
        config_hash = config_hash,
        routes_version = served.routes_version,
        routes = served.routes,
        -- Dict entries written or deleted so far, and how the loads went (diff or whole file).
        routes_stats = store.stats(),
        error = served.error,
        auth = auth.enabled() and "enabled" or "disabled",
        auth_stats = auth.stats(),
        requests = traffic.totals(),
    }
end

-- content_by_lua of the status endpoint. A POST loads the routing table first, so the router
-- need not wait for the poller.
function _M.status(config_hash)
    if ngx.req.get_method() == "POST" then
        store.load(true)
    end
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Cache-Control"] = "no-store"
    ngx.say(cjson.encode(_M.report(config_hash)))
end

return _M
