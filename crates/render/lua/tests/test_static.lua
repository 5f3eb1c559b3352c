-- clearml_static: static routes, their access rules and client affinity.
local t = require("helper")
local fake = require("fake_ngx")
local auth = require("clearml_auth")
local login = require("login")
local static = require("clearml_static")

local TARGETS = { "10.0.0.2 80", "10.0.0.3 81" }

fake.serve_table({
    version = "v1",
    routes = {},
    static = {
        routes = {
            lb = { prefix = "/lb", targets = TARGETS, load_balanced = true, public = true },
            ["my-app"] = { prefix = "/a/b", targets = { "10.0.0.4 80" }, public = true },
            idle = { prefix = "/idle", targets = {}, public = true },
            team = { prefix = "/team", targets = { "10.0.0.5 80" }, members = { "u1", "bob" } },
            web = { prefix = "", targets = { "10.0.0.6 80" }, public = true },
        },
        paths = { ["/lb"] = "lb", ["/a/b"] = "my-app", ["/idle"] = "idle", ["/team"] = "team" },
        hosts = { ["web.gw"] = "web" },
        secure_cookies = true,
    },
})

t.test("the longest whole-segment prefix wins", function()
    local known = { ["/a"] = "short", ["/a/b"] = "long" }
    local lookup = function(p) return known[p] end
    t.eq({ static.longest_prefix("/a/b/c", lookup) }, { "/a/b", "long" })
    t.eq({ static.longest_prefix("/a/bc", lookup) }, { "/a", "short" })
    t.eq(static.longest_prefix("/ab", lookup), nil)
end)

t.test("members match by user id or name, never by an empty one", function()
    t.yes(static.is_member({ "u1", "bob" }, "u1", ""))
    t.yes(static.is_member({ "u1", "bob" }, "u9", "bob"))
    t.no(static.is_member({ "u1", "" }, "", ""))
    t.no(static.is_member({}, "u1", "bob"))
end)

t.test("affinity keys are short, stable and differ per target", function()
    local a = static.affinity_key("lb", TARGETS[1])
    t.eq(#a, 20)
    t.eq(a, static.affinity_key("lb", TARGETS[1]))
    t.yes(a ~= static.affinity_key("lb", TARGETS[2]))
    t.yes(a ~= static.affinity_key("other", TARGETS[1]))
    t.eq(static.cookie_name("my-app"), "clearml_affinity_my_app")
    t.eq(static.cookie_attributes({ prefix = "", secure = false }), "; Path=/; HttpOnly; SameSite=Lax")
    t.eq(static.cookie_attributes({ prefix = "/lb", secure = true }), "; Path=/lb; HttpOnly; SameSite=Lax; Secure")
end)

t.test("load balanced: round robin sets the cookie; the cookie keeps its target", function()
    local route = { prefix = "/lb", targets = TARGETS, load_balanced = true, secure = false }
    local picks = {}
    for i = 1, 3 do
        fake.new_request({})
        picks[i] = static.pick_target("lb", route)
        t.yes(ngx.header["Set-Cookie"]:find("clearml_affinity_lb=" .. static.affinity_key("lb", TARGETS[picks[i]]), 1, true))
    end
    t.eq({ picks[1] ~= picks[2], picks[1] == picks[3] }, { true, true })
    fake.new_request({ cookie_clearml_affinity_lb = static.affinity_key("lb", TARGETS[2]) })
    t.eq(static.pick_target("lb", route), 2)
    t.eq(ngx.header["Set-Cookie"], nil)
    fake.new_request({ cookie_clearml_affinity_lb = "stale" })
    static.pick_target("lb", route)
    t.yes(ngx.header["Set-Cookie"] ~= nil, "a stale cookie is replaced")
end)

t.test("access: the prefix is stripped and a target picked", function()
    fake.new_request({ request_uri = "/a/b/x?y=1" })
    t.eq(fake.run(static.access), nil)
    t.eq({ ngx.var.clearml_upstream_uri, ngx.var.clearml_route_prefix }, { "/x?y=1", "/a/b" })
    t.eq({ ngx.ctx.clearml_host, ngx.ctx.clearml_port }, { "10.0.0.4", 80 })
    t.eq(ngx.ctx.clearml_static, { name = "my-app", targets = { "10.0.0.4 80" }, first = 1, tries = 0 })
end)

t.test("access: a subdomain route owns every path of its host", function()
    fake.new_request({ host = "web.gw", request_uri = "/lb/x" })
    t.eq(fake.run(static.access), nil)
    t.eq({ ngx.var.clearml_upstream_uri, ngx.var.clearml_route_prefix, ngx.ctx.clearml_host }, { "/lb/x", "", "10.0.0.6" })
end)

t.test("access: redirect to the slash, 404 elsewhere, 503 without targets", function()
    fake.new_request({ request_uri = "/a/b?q" })
    t.eq(fake.run(static.access), { ended = "redirect", uri = "/a/b/?q", status = 301 })
    fake.new_request({ request_uri = "/a/bc" })
    t.eq(fake.run(static.access).status, 404)
    fake.new_request({ request_uri = "/idle/" })
    t.eq(fake.run(static.access).status, 503)
end)

t.test("a websocket goes to the relay with its target", function()
    fake.new_request({ request_uri = "/a/b/ws", http_upgrade = "WebSocket" })
    t.eq(fake.run(static.access), { ended = "exec", location = "@clearml_static_websocket" })
    t.eq({ ngx.var.clearml_static_name, ngx.var.clearml_static_peer }, { "my-app", "10.0.0.4 80" })
end)

t.test("add_response_cookie keeps the cookies already set", function()
    fake.new_request({})
    static.add_response_cookie("a=1")
    t.eq(ngx.header["Set-Cookie"], "a=1")
    static.add_response_cookie("b=2")
    t.eq(ngx.header["Set-Cookie"], { "a=1", "b=2" })
    static.add_response_cookie("c=3")
    t.eq(ngx.header["Set-Cookie"], { "a=1", "b=2", "c=3" })
end)

t.test("dot segments are refused before a route is chosen, also encoded", function()
    for _, uri in ipairs({ "/a/b/../x", "/a/b/./x", "/a/b/%2e%2E/x", "/a/b/..%2fx", "/a/b/..\\x", "/a/b/.." }) do
        t.yes(static.has_dot_segment(uri), uri)
        fake.new_request({ request_uri = uri })
        t.eq(fake.run(static.access).status, 400, uri)
    end
    for _, uri in ipairs({ "/a/b/x", "/a/b/.x/..y", "/a/b/x?p=/../", "/a/b/...", "/a/b/%2e%2e.x" }) do
        t.no(static.has_dot_segment(uri), uri)
    end
end)

t.test("a public route: ClearML credentials removed, the app's own kept", function()
    local token = login.token(login.user("u1", "alice"))
    fake.new_request({
        request_uri = "/a/b/x",
        http_cookie = "clearml_token_basic=" .. token .. "; theirs=1",
        http_authorization = "Bearer " .. token,
        http_x_clearml_gateway_token = token,
        headers = { Cookie = "clearml_token_basic=" .. token .. "; theirs=1", Authorization = "Bearer " .. token,
            ["X-ClearML-Gateway-Token"] = token },
    })
    t.eq(fake.run(static.access), nil)
    t.eq(fake.request.headers, { Cookie = "theirs=1" })
    fake.new_request({ request_uri = "/a/b/x", http_authorization = "Bearer sk-abc", headers = { Authorization = "Bearer sk-abc" } })
    t.eq(fake.run(static.access), nil)
    t.eq(fake.request.headers, { Authorization = "Bearer sk-abc" })
end)

t.test("a members-only route: login required, members only", function()
    fake.new_request({ request_uri = "/team/" })
    t.eq(fake.run(static.access), nil, "authentication disabled: no check")
    login.enable(auth)
    fake.new_request({ request_uri = "/team/" })
    t.eq(fake.run(static.access).status, 401)
    fake.new_request({ request_uri = "/team/", http_authorization = "Bearer " .. login.token(login.user("u2", "eve")) })
    t.eq(fake.run(static.access).status, 403)
    fake.new_request({ request_uri = "/team/", http_authorization = "Bearer " .. login.token(login.user("u3", "bob")) })
    t.eq(fake.run(static.access), nil)
    t.eq(ngx.ctx.clearml_host, "10.0.0.5")
end)

t.done()
