-- clearml_store: routes.json into the shared dict, and the lookups of the request phases.
local t = require("helper")
local fake = require("fake_ngx")
local cjson = require("cjson.safe")
local store = require("clearml_store")

local state = ngx.shared.clearml_router_state
local file = os.tmpname()

local function write(doc)
    fake.write_file(file, type(doc) == "string" and doc or cjson.encode(doc))
end

local TABLE = {
    version = "v1",
    routes = {
        abc = { host = "10.0.0.1", port = 8080 },
        ["abc__jupyter"] = { host = "2001:db8::1", port = 8888, strip_prefix = false },
    },
    static = {
        routes = {
            demo = { prefix = "/demo", targets = { "10.0.0.2 80", "10.0.0.3 80" }, load_balanced = true },
            web = { prefix = "", targets = { "10.0.0.4 80" }, public = true },
        },
        paths = { ["/demo"] = "demo" },
        hosts = { ["web.gw"] = "web" },
        secure_cookies = true,
    },
}

t.test("a table is loaded with its version and counts", function()
    fake.flush()
    write(TABLE)
    store.init(file)
    t.eq(store.status(), { routes_version = "v1", routes = 2 })
    t.eq(state:get("static_count"), 2)
end)

t.test("route lookups give host, port and whether the prefix is kept", function()
    t.eq({ store.route("abc") }, { "10.0.0.1", 8080, false })
    t.eq({ store.route("abc__jupyter") }, { "2001:db8::1", 8888, true })
    t.eq(store.route("nope"), nil)
    t.eq(store.route("bad id"), nil)
    t.eq(store.route(nil), nil)
end)

t.test("static lookups by name, path, host and target", function()
    t.eq(store.static_route("demo"), {
        prefix = "/demo", targets = { "10.0.0.2 80", "10.0.0.3 80" }, load_balanced = true, public = false, secure = true,
    })
    t.eq(store.static_for_path("/demo"), "demo")
    t.eq(store.static_for_path("/web"), nil)
    t.eq(store.static_for_host("web.gw"), "web")
    t.eq(store.static_for_host(nil), nil)
    t.yes(store.static_serves("demo", "10.0.0.3 80"))
    t.no(store.static_serves("demo", "10.0.0.9 80"))
    t.no(store.static_serves("gone", "10.0.0.3 80"))
end)

t.test("a new table replaces the old one: removed entries are deleted", function()
    write({ version = "v2", routes = { xyz = { host = "10.0.0.5", port = 80 } } })
    t.yes(store.load(true))
    t.eq(store.status(), { routes_version = "v2", routes = 1 })
    t.eq(ngx.shared.clearml_routes:get_keys(0), { "xyz" })
end)

t.test("a refused or unreadable file keeps the previous table and reports why", function()
    write("{not json")
    t.no(store.load(true))
    t.eq(store.status().routes_version, "v2")
    t.eq({ store.route("xyz") }, { "10.0.0.5", 80, false })
    t.yes(store.status().error:find("kept the previous one", 1, true), store.status().error)
    os.remove(file)
    t.no(store.load(true))
    t.yes(store.status().error:find("cannot read", 1, true), store.status().error)
    write({ version = "v3", routes = {} })
    t.yes(store.load(true))
    t.eq(store.status(), { routes_version = "v3", routes = 0 })
end)

t.test("the timer skips a load while another worker holds the lock", function()
    write({ version = "v4", routes = {} })
    state:add("load_lock", true)
    t.no(store.load(false))
    t.eq(store.status().routes_version, "v3")
    state:delete("load_lock")
    t.yes(store.load(false))
    t.eq(store.status().routes_version, "v4")
end)

os.remove(file)
t.done()
