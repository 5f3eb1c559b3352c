-- clearml_ratelimit: the GCRA buckets, who a request counts for, the 429 answer, and that the
-- task and static route paths call it only for routes that have a limit.
local t = require("helper")
local fake = require("fake_ngx")
local cjson = require("cjson.safe")
local ratelimit = require("clearml_ratelimit")
local router = require("clearml_router")
local static = require("clearml_static")

local SECOND = 1000000

-- Takes `n` requests at time `now`; how many passed.
local function passed(dict, key, now, rate, burst, n)
    local count = 0
    for _ = 1, n do
        if ratelimit.take(dict, key, now, rate, burst) == 0 then
            count = count + 1
        end
    end
    return count
end

t.test("a burst passes at once, then one request per interval", function()
    local dict = fake.shared_dict()
    local now = 1800000000 * SECOND
    t.eq(passed(dict, "k", now, 2, 5, 10), 5, "the burst")
    -- Half a second later (2/s): one more.
    t.eq(passed(dict, "k", now + SECOND / 2, 2, 5, 3), 1)
    -- The refused requests did not use up the allowance: the next interval brings one.
    t.eq(passed(dict, "k", now + SECOND, 2, 5, 3), 1)
    -- Idle long enough, the whole burst is back.
    t.eq(passed(dict, "k", now + 100 * SECOND, 2, 5, 10), 5)
end)

t.test("buckets are per key", function()
    local dict = fake.shared_dict()
    local now = 1800000000 * SECOND
    t.eq(passed(dict, "a", now, 1, 2, 5), 2)
    t.eq(passed(dict, "b", now, 1, 2, 5), 2)
end)

t.test("the wait is until the next request passes, whole seconds rounded up", function()
    local dict = fake.shared_dict()
    local now = 1800000000 * SECOND
    passed(dict, "k", now, 0.25, 1, 1)
    local wait = ratelimit.take(dict, "k", now, 0.25, 1)
    t.eq(wait, 4 * SECOND)
    t.eq(ratelimit.take(dict, "k", now + 3 * SECOND + 1, 0.25, 1), SECOND - 1)
    t.eq(ratelimit.retry_after(SECOND - 1), 1)
    t.eq(ratelimit.retry_after(1), 1)
    t.eq(ratelimit.retry_after(4 * SECOND + 1), 5)
end)

t.test("over ten seconds a steady flood gets the rate times ten plus the burst", function()
    local dict = fake.shared_dict()
    local start = 1800000000 * SECOND
    local count = 0
    -- 200 requests a second for 10 s (a request every 5 ms) against 7/s burst 3.
    for ms = 0, 9999, 5 do
        if ratelimit.take(dict, "k", start + ms * 1000, 7, 3) == 0 then
            count = count + 1
        end
    end
    -- The last request is at 9.995 s: the allowance of the 10th second is not quite due.
    t.yes(count == 7 * 10 + 3 or count == 7 * 10 + 3 - 1, "allowed " .. count)
end)

t.test("requests count for their header's hashed value, else the client address", function()
    fake.new_request({ remote_addr = "198.51.100.7", http_x_api_key = "secret-key" })
    t.eq(ratelimit.client("client"), "c:198.51.100.7")
    t.eq(ratelimit.client("header:X-Api-Key"), "h:" .. ngx.md5("secret-key"))
    fake.new_request({ remote_addr = "198.51.100.7" })
    t.eq(ratelimit.client("header:X-Api-Key"), "c:198.51.100.7")
    fake.new_request({ remote_addr = "198.51.100.7", http_x_api_key = "" })
    t.eq(ratelimit.client("header:X-Api-Key"), "c:198.51.100.7")
end)

t.test("task limits read back from the routing table text", function()
    t.eq(ratelimit.parse("0.5:2:header:X-Api-Key"), { rate = 0.5, burst = 2, key = "header:X-Api-Key" })
    t.eq(ratelimit.parse("x:2:client"), nil)
end)

fake.serve_table({
    version = "v1",
    routes = {
        free = { host = "10.0.0.1", port = 80 },
        limited = { host = "10.0.0.2", port = 80, rate_limit = { requests_per_second = 1, burst = 2, key = "client" } },
        kept = { host = "10.0.0.3", port = 80, strip_prefix = false,
            rate_limit = { requests_per_second = 1, burst = 1, key = "client" } },
    },
    static = {
        routes = {
            open = { prefix = "/open", targets = { "10.0.0.4 80" }, public = true },
            api = { prefix = "/api", targets = { "10.0.0.5 80" }, public = true,
                rate_limit = { requests_per_second = 1, burst = 1, key = "header:X-Api-Key" } },
        },
        paths = { ["/open"] = "open", ["/api"] = "api" },
    },
})

-- Runs access for `uri` from `addr` (and optional headers as nginx variables).
local function request(handler, uri, addr, vars)
    vars = vars or {}
    vars.request_uri, vars.remote_addr = uri, addr
    fake.new_request(vars)
    return fake.run(handler)
end

t.test("a limited task route answers 429 with Retry-After once the burst is spent, per client", function()
    t.eq(request(router.access, "/service/limited/", "192.0.2.10"), nil)
    t.eq(request(router.access, "/service/limited/", "192.0.2.10"), nil)
    local ended = request(router.access, "/service/limited/", "192.0.2.10")
    t.eq(ended.status, 429)
    t.eq(ngx.header["Retry-After"], "1")
    local body = cjson.decode(fake.request.body)
    t.eq({ body.error, body.retry_after }, { "rate_limited", 1 })
    -- Another client has its own allowance.
    t.eq(request(router.access, "/service/limited/", "192.0.2.11"), nil)
    -- A route keeping its prefix is still read right.
    t.eq(request(router.access, "/service/kept/x", "192.0.2.10"), nil)
    t.eq(ngx.var.clearml_upstream_uri, "/service/kept/x")
    t.eq(request(router.access, "/service/kept/x", "192.0.2.10").status, 429)
end)

t.test("a limited static route counts by its header", function()
    t.eq(request(static.access, "/api/x", "192.0.2.20", { http_x_api_key = "k1" }), nil)
    t.eq(request(static.access, "/api/x", "192.0.2.20", { http_x_api_key = "k1" }).status, 429)
    t.eq(request(static.access, "/api/x", "192.0.2.20", { http_x_api_key = "k2" }), nil)
end)

t.test("routes without a limit never touch the buckets", function()
    -- `take` is the only user of the shared dict.
    local take, calls = ratelimit.take, 0
    ratelimit.take = function(...)
        calls = calls + 1
        return take(...)
    end
    for _ = 1, 5 do
        t.eq(request(router.access, "/service/free/", "192.0.2.30"), nil)
        t.eq(request(static.access, "/open/", "192.0.2.30"), nil)
    end
    t.eq(calls, 0, "buckets taken for unlimited routes")
    request(router.access, "/service/limited/", "192.0.2.31")
    ratelimit.take = take
    t.eq(calls, 1, "a limited route takes one")
end)

t.done()
