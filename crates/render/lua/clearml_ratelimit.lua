-- Rate limits of routes (GCRA, the "leaky bucket as a meter"): one bucket per route and client
-- in the lua_shared_dict clearml_ratelimit, so a limit holds across nginx workers and across all
-- of a route's targets. Limits are data from routes.json (clearml_rules.rate_limit); a route
-- without one never reaches this module.
--
-- Each bucket holds its theoretical arrival time (TAT) in whole microseconds: integers stay
-- exact in a double, where seconds since 1970 would lose the sums of small intervals. The common
-- case is one atomic `incr`; only a bucket that was idle is reset with `set` (two workers doing
-- that at the same moment let one extra request through, never one fewer).

local pages = require("clearml_pages")

local _M = {}

local buckets = ngx.shared.clearml_ratelimit

-- Takes one request from bucket `key` of `dict` at time `now` (microseconds). Returns 0 if it
-- may pass, else the microseconds until one would.
function _M.take(dict, key, now, rate, burst)
    local interval = math.max(1, math.floor(1000000 / rate + 0.5))
    -- How far ahead of now the TAT may be: `burst` requests at once, then one per interval.
    local tolerance = (burst - 1) * interval
    local tat, err = dict:incr(key, interval, now)
    if not tat then
        -- A full dict evicts old buckets before failing; failing anyway must not stop traffic.
        ngx.log(ngx.WARN, "clearml router: rate limit bucket not counted: ", err)
        return 0
    end
    local before = tat - interval
    if before < now then
        dict:set(key, now + interval)
        return 0
    end
    if before - now <= tolerance then
        return 0
    end
    dict:incr(key, -interval)
    return before - now - tolerance
end

-- The nginx variable of each header name a limit is keyed by (`header:X-Api-Key` -> http_x_api_key).
local header_vars = {}

-- Who the request counts for: its header's value (hashed: bounded, and no API key is kept),
-- or, for `client` and requests without the header, the client address (the real one when
-- it came through a trusted proxy: realip has set remote_addr).
function _M.client(key)
    if key ~= "client" then
        local var = header_vars[key]
        if not var then
            var = "http_" .. (key:sub(8):lower():gsub("-", "_"))
            header_vars[key] = var
        end
        local value = ngx.var[var]
        if value and value ~= "" then
            return "h:" .. ngx.md5(value)
        end
    end
    return "c:" .. ngx.var.remote_addr
end

-- Parsed limits of task routes, by their text in the routing table (`<rate>:<burst>:<key>`).
local parsed = {}

function _M.parse(text)
    local limit = parsed[text]
    if limit == nil then
        local rate, burst, key = text:match("^([^:]+):(%d+):(.+)$")
        rate, burst = tonumber(rate), tonumber(burst)
        limit = rate and burst and rate > 0 and burst >= 1 and { rate = rate, burst = burst, key = key } or false
        parsed[text] = limit
    end
    return limit or nil
end

-- Whole seconds a client should wait: rounded up, at least 1.
function _M.retry_after(wait_us)
    return math.max(1, math.ceil(wait_us / 1000000))
end

-- access_by_lua, after the route is known and before the login is checked (a flood of
-- requests never reaches ClearML's login check): answers 429 once the client's burst is spent.
-- `scope` names the route ("t:<route id>" or "s:<static route name>").
function _M.check(scope, limit)
    local now = math.floor(ngx.now() * 1000 + 0.5) * 1000
    local wait = _M.take(buckets, scope .. " " .. _M.client(limit.key), now, limit.rate, limit.burst)
    if wait == 0 then
        return
    end
    local seconds = _M.retry_after(wait)
    ngx.header["Retry-After"] = tostring(seconds)
    return pages.send(429, "rate_limited", "Too many requests",
        "This endpoint allows " .. limit.rate .. " requests per second (bursts of " .. limit.burst
            .. "). Retry in " .. seconds .. " s.", nil, { retry_after = seconds })
end

return _M
