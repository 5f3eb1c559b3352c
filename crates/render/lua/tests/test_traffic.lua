-- clearml_traffic: per-worker counting, the once-a-second flush and the control listener's answer.
local t = require("helper")
local fake = require("fake_ngx")
local cjson = require("cjson.safe")
local traffic = require("clearml_traffic")

local clock = 1000
ngx.time = function() return clock end
ngx.now = function() return clock + 0.5 end

-- One finished request: `seconds` long, answered `status`, of a task route or a static route.
local function request(ctx, status, seconds, vars)
    fake.new_request(vars or {})
    fake.request.start_time = ngx.now() - seconds
    for k, v in pairs(ctx) do
        ngx.ctx[k] = v
    end
    ngx.status = status
    traffic.record()
end

-- The served document, decoded, with the entries of each second added up by route.
local function served(since)
    fake.new_request({ arg_since = since and tostring(since) or nil })
    traffic.serve()
    local doc = assert(cjson.decode(fake.request.body))
    local by_second = {}
    for _, e in ipairs(doc.seconds) do
        by_second[e.second] = e.routes
    end
    return doc, by_second
end

t.test("requests are kept per worker until the second is over, then flushed per second", function()
    fake.flush()
    request({ clearml_route = "abc", clearml_host = "10.0.0.1", clearml_port = 80 }, 200, 0.003)
    request({ clearml_route = "abc", clearml_host = "10.0.0.1", clearml_port = 80 }, 503, 0.3)
    traffic.flush()
    local _, seconds = served()
    t.eq(seconds, {}, "the current second is still being filled")
    clock = 1001
    request({ clearml_route = "xyz", clearml_host = "::1", clearml_port = 8080 }, 200, 20)
    traffic.flush()
    local doc
    doc, seconds = served()
    t.eq(doc.now, 1001)
    t.eq(doc.bounds, traffic.BOUNDS)
    local abc = seconds[1000].abc
    t.eq({ abc.n, abc.e, abc.g["10.0.0.1:80"] }, { 2, 1, { 2, 1 } })
    t.eq(math.abs(abc.t - 0.303) < 1e-9, true, "seconds summed: " .. abc.t)
    t.eq(abc.h, { 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0 }, "0.003 s in the first bucket, 0.3 s in (0.25, 0.5]")
    t.eq(seconds[1001], nil, "1001 is not over")
    clock = 1002
    traffic.flush()
    _, seconds = served()
    t.eq(seconds[1001].xyz.h[12], 1, "over 10 s: the last bucket")
    t.eq(seconds[1001].xyz.g["[::1]:8080"], { 1, 0 })
    _, seconds = served(1001)
    t.eq(seconds[1000], nil, "?since leaves older seconds out")
    t.eq(require("clearml_control").report("h").requests, { abc = 2, xyz = 1 })
end)

t.test("static routes count under static/<name>; the targets refused before the last try fail", function()
    fake.flush()
    clock = 2000
    request({ clearml_host = "10.0.0.2", clearml_port = 81,
        clearml_static = { name = "models", targets = {}, first = 1, tries = 2 } }, 200, 0.02,
        { upstream_addr = "10.0.0.1:81, 10.0.0.2:81" })
    request({ clearml_static = { name = "models", tries = 0 } }, 404, 0.001)
    traffic.flush(true)
    local _, seconds = served()
    local m = seconds[2000]["static/models"]
    t.eq({ m.n, m.e, m.g }, { 2, 0, { ["10.0.0.1:81"] = { 1, 1 }, ["10.0.0.2:81"] = { 1, 0 } } })
end)

t.test("requests of no route are not counted", function()
    fake.flush()
    clock = 3000
    request({}, 404, 0.001)
    traffic.flush(true)
    local _, seconds = served()
    t.eq(seconds, {})
end)

t.test("the error page counts the route from the variables access set, every tried target failed", function()
    fake.serve_table({ version = "v1", routes = {}, static = {
        routes = { api = { prefix = "/api", targets = { "10.0.0.3 80" }, public = true } },
        paths = { ["/api"] = "api" },
    } })
    clock = 4000
    for _, vars in ipairs({
        { clearml_route_prefix = "/service/abc", upstream_addr = "10.0.0.1:80" },
        { clearml_route_prefix = "/api", upstream_addr = "10.0.0.3:80, 10.0.0.4:80 : 10.0.0.3:80" },
        { clearml_route_prefix = "/nothing" },
    }) do
        fake.new_request(vars)
        fake.request.start_time = ngx.now() - 1
        ngx.status = 502
        traffic.record_unavailable()
    end
    traffic.flush(true)
    local _, seconds = served()
    t.eq(seconds[4000].abc, { n = 1, e = 1, t = 1, h = { 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0 },
        g = { ["10.0.0.1:80"] = { 1, 1 } } })
    t.eq(seconds[4000]["static/api"].g, { ["10.0.0.3:80"] = { 2, 2 }, ["10.0.0.4:80"] = { 1, 1 } })
    t.eq(seconds[4000]["static/"], nil)
end)

t.test("upstream address lists are split on commas and internal-redirect colons", function()
    t.eq(traffic.upstream_addresses("a:1, [::1]:2 : b:3"), { "a:1", "[::1]:2", "b:3" })
    t.eq(traffic.upstream_addresses(nil), {})
end)

t.done()
