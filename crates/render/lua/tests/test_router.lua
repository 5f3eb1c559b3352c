-- clearml_router: /service/<route id>/ routing and the balancer.
local t = require("helper")
local fake = require("fake_ngx")
local router = require("clearml_router")

fake.serve_table({
    version = "v1",
    routes = {
        abc = { host = "10.0.0.1", port = 8080 },
        ["abc__nb"] = { host = "2001:db8::1", port = 8888, strip_prefix = false },
    },
    static = { routes = { web = { targets = { "10.0.0.6 80" }, public = true } }, hosts = { ["web.gw"] = "web" } },
})

t.test("service URIs split into route id and the rest", function()
    t.eq({ router.split_service_uri("/service/abc/x?y") }, { "abc", "/x?y" })
    t.eq({ router.split_service_uri("/service/abc") }, { "abc", "" })
    t.eq({ router.split_service_uri("/service/") }, { "", "" })
    t.eq(router.split_service_uri("/other/abc/"), nil)
end)

t.test("a route strips /service/<id>, kept byte for byte", function()
    fake.new_request({ request_uri = "/service/abc/a%2Fb?x=%20" })
    t.eq(fake.run(router.access), nil)
    t.eq({ ngx.var.clearml_upstream_uri, ngx.var.clearml_route_prefix }, { "/a%2Fb?x=%20", "/service/abc" })
    t.eq({ ngx.ctx.clearml_route, ngx.ctx.clearml_host, ngx.ctx.clearml_port }, { "abc", "10.0.0.1", 8080 })
end)

t.test("a route that keeps its prefix gets the full URI", function()
    fake.new_request({ request_uri = "/service/abc__nb/lab" })
    t.eq(fake.run(router.access), nil)
    t.eq(ngx.var.clearml_upstream_uri, "/service/abc__nb/lab")
end)

t.test("unknown or invalid ids answer 404; a bare id redirects to its slash", function()
    for _, uri in ipairs({ "/service/nope/", "/service/a.b/", "/service//" }) do
        fake.new_request({ request_uri = uri })
        t.eq(fake.run(router.access).status, 404, uri)
    end
    fake.new_request({ request_uri = "/service/abc?q=1" })
    t.eq(fake.run(router.access), { ended = "redirect", uri = "/service/abc/?q=1", status = 301 })
end)

t.test("a subdomain static route takes /service/ on its host", function()
    fake.new_request({ host = "web.gw", request_uri = "/service/abc/" })
    t.eq(fake.run(router.access), nil)
    t.eq({ ngx.ctx.clearml_host, ngx.ctx.clearml_route }, { "10.0.0.6", nil })
end)

t.test("retries walk the targets from the first pick, wrapping around", function()
    local targets = { "a", "b", "c" }
    t.eq({ router.retry_target(targets, 2, 0), router.retry_target(targets, 2, 1), router.retry_target(targets, 2, 2) },
        { "b", "c", "a" })
    t.eq(router.peer_host("2001:db8::1"), "[2001:db8::1]")
    t.eq(router.peer_host("10.0.0.1"), "10.0.0.1")
end)

t.test("the balancer connects to the pick, then to the next targets", function()
    fake.new_request({})
    ngx.ctx.clearml_host, ngx.ctx.clearml_port = "2001:db8::1", 8888
    router.balance()
    t.eq(fake.request.peer, { "[2001:db8::1]", 8888 })
    ngx.ctx = { clearml_host = "10.0.0.2", clearml_port = 80,
        clearml_static = { targets = { "10.0.0.2 80", "10.0.0.3 81" }, first = 1, tries = 0 } }
    router.balance()
    t.eq({ fake.request.more_tries, fake.request.peer }, { 1, { "10.0.0.2", 80 } })
    router.balance()
    t.eq(fake.request.peer, { "10.0.0.3", 81 })
end)

t.test("a worker shutting down after a reload tells keep-alive clients to reconnect", function()
    fake.new_request({})
    router.reconnect_hint()
    t.eq(ngx.header["Connection"], nil)
    ngx.worker.exiting = function() return true end
    router.reconnect_hint()
    ngx.worker.exiting = function() return false end
    t.eq(ngx.header["Connection"], "close")
end)

t.done()
