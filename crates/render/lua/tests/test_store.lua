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

---------------------------------------------------------------------------------------------
-- The text diff: the router's line layout (gateway_core::routes_file::to_bytes).

-- `routes`: a list of { id, host, port[, keep] } in id order; `static`: a JSON text.
local function layout_text(version, list, static, tcp)
    local lines = {}
    for i, r in ipairs(list) do
        local keep = r[4] and ',"strip_prefix":false' or ""
        lines[i] = string.format('"%s":{"host":"%s","port":%d,"task":"t"%s}', r[1], r[2], r[3], keep)
    end
    return '{"version":"' .. version .. '",\n"routes":{\n' .. table.concat(lines, ",\n")
        .. (#lines > 0 and "\n" or "") .. '},\n"static":' .. (static or "{}") .. ',\n"tcp":' .. (tcp or "{}") .. "}\n"
end

local function dict_snapshot()
    local out = {}
    for _, key in ipairs(ngx.shared.clearml_routes:get_keys(0)) do
        out[key] = ngx.shared.clearml_routes:get(key)
    end
    return out
end

local versions = 0
-- Writes `list` as the next version and loads it; returns the stats increase of the load.
local function load_list(list, static, tcp)
    versions = versions + 1
    write(layout_text(string.format("v%04d", versions), list, static, tcp))
    local before = store.stats()
    t.yes(store.load(true), "load")
    local after = store.stats()
    return { touched = after.touched - before.touched, diff = after.diff_loads - before.diff_loads }
end

-- What a full load of the same file stores: the diff must leave exactly that.
local function assert_same_as_full_load(what)
    local diffed, status = dict_snapshot(), store.status()
    fake.flush()
    store.init(file)
    t.eq(dict_snapshot(), diffed, what)
    t.eq(store.status(), status, what)
end

local function routes_list(n, port)
    local list = {}
    for i = 1, n do
        list[i] = { string.format("r%03d", i), "10.0.0." .. i, port or 8000 }
    end
    return list
end

t.test("one changed route is one line diffed and one dict write", function()
    fake.flush()
    local list = routes_list(50)
    load_list(list)
    store.init(file)
    list[20][3] = 9000
    t.eq(load_list(list), { touched = 1, diff = 1 })
    t.eq({ store.route("r020") }, { "10.0.0.20", 9000, false })
    t.eq(store.status().routes, 50)
    list[20][4] = true
    t.eq(load_list(list), { touched = 1, diff = 1 })
    t.eq({ store.route("r020") }, { "10.0.0.20", 9000, true })
    assert_same_as_full_load("one change")
end)

t.test("routes added and removed at the start, middle and end", function()
    fake.flush()
    local list = routes_list(10)
    load_list(list)
    store.init(file)
    local steps = {
        { "append", function() table.insert(list, { "r999", "10.0.1.1", 1 }) end, 1 },
        { "prepend", function() table.insert(list, 1, { "a000", "10.0.1.2", 2 }) end, 1 },
        { "insert", function() table.insert(list, 5, { "r004x", "10.0.1.3", 3 }) end, 1 },
        { "remove last", function() table.remove(list) end, 1 },
        { "remove first", function() table.remove(list, 1) end, 1 },
        { "remove two apart", function() table.remove(list, 7); table.remove(list, 2) end, 2 },
        { "remove all", function() for i = #list, 1, -1 do list[i] = nil end end, 9 },
        { "add to empty", function() list[1] = { "z1", "10.0.2.1", 1 }; list[2] = { "z2", "10.0.2.2", 2 } end, 2 },
    }
    for _, step in ipairs(steps) do
        step[2]()
        t.eq(load_list(list), { touched = step[3], diff = 1 }, step[1])
        t.eq(store.status().routes, #list, step[1])
        assert_same_as_full_load(step[1])
    end
end)

t.test("changed lines a full decode would refuse are not diffed", function()
    fake.flush()
    local list = routes_list(3)
    load_list(list)
    store.init(file)
    local good = layout_text("v9999", list)
    for what, bad in pairs({
        ["a missing comma"] = good:gsub('("r002":%b{}),', "%1"),
        ["a comma after the last"] = good:gsub('("r003":%b{})\n', "%1,\n"),
    }) do
        write(bad)
        t.no(store.load(true), what)
        t.eq(store.status().routes_version, string.format("v%04d", versions), what)
    end
    -- Valid JSON in another layout: loaded whole.
    write((good:gsub('("r002":%b{}),\n', "%1,")))
    local before = store.stats()
    t.yes(store.load(true))
    t.eq(store.stats().full_loads - before.full_loads, 1)
    t.eq(store.status(), { routes_version = "v9999", routes = 3 })
end)

t.test("a TCP-only change is a diff that touches nothing", function()
    fake.flush()
    local list = routes_list(5)
    load_list(list)
    store.init(file)
    local tcp = '{"t1":{"listen":10001,"host":"10.0.0.7","port":22,"task":"t1"}}'
    t.eq(load_list(list, nil, tcp), { touched = 0, diff = 1 })
    t.eq(store.status().routes_version, string.format("v%04d", versions))
    t.eq(load_list(list, nil, "{}"), { touched = 0, diff = 1 })
    assert_same_as_full_load("tcp")
end)

t.test("a refused entry on a changed line is dropped, like a full load drops it", function()
    fake.flush()
    local list = routes_list(5)
    load_list(list)
    store.init(file)
    list[3][2] = "not a host"
    t.eq(load_list(list), { touched = 1, diff = 1 })
    t.eq(store.route("r003"), nil)
    t.eq(store.status().routes, 4)
    assert_same_as_full_load("refused")
    list[3][2] = "10.0.0.3"
    t.eq(load_list(list), { touched = 1, diff = 1 })
    t.eq(store.status().routes, 5)
end)

t.test("a static change, another layout or another worker's load: the whole file", function()
    fake.flush()
    local list = routes_list(5)
    load_list(list)
    store.init(file)
    local static = '{"routes":{"demo":{"prefix":"/demo","targets":["10.0.0.2 80"]}},"paths":{"/demo":"demo"}}'
    t.eq(load_list(list, static).diff, 0)
    t.eq(store.static_for_path("/demo"), "demo")
    list[1][3] = 1
    t.eq(load_list(list, static).diff, 1)
    -- Another worker loaded meanwhile: it left its text for the next diff.
    local text = layout_text("other", list, static)
    ngx.shared.clearml_routes_text:set("text", text)
    ngx.shared.clearml_routes_text:set("version", "other")
    state:set("version", "other")
    list[1][3] = 2
    t.eq(load_list(list, static).diff, 1)
    -- Without that text, the whole file.
    state:set("version", "elsewhere")
    list[1][3] = 3
    t.eq(load_list(list, static).diff, 0)
    t.eq({ store.route("r001") }, { "10.0.0.1", 3, false })
    write(cjson.encode({ version = "pretty", routes = { x = { host = "10.0.0.9", port = 9 } } }))
    t.yes(store.load(true))
    t.eq(store.status(), { routes_version = "pretty", routes = 1 })
end)

t.test("random edits through the diff always store what a full load stores", function()
    fake.flush()
    math.randomseed(13)
    local list = routes_list(30)
    load_list(list)
    store.init(file)
    for round = 1, 60 do
        for _ = 1, math.random(1, 3) do
            local op, i = math.random(1, 3), math.random(1, math.max(#list, 1))
            if op == 1 or #list == 0 then
                table.insert(list, i, { string.format("r%03d_%d", i, round), "10.0.3." .. round, round })
            elseif op == 2 then
                table.remove(list, i)
            else
                list[i][3] = list[i][3] + 1
            end
        end
        table.sort(list, function(a, b) return a[1] < b[1] end)
        t.eq(load_list(list).diff, 1, "round " .. round)
        assert_same_as_full_load("round " .. round)
    end
end)

t.test("static routes are decoded once per version per worker", function()
    fake.flush()
    local static = '{"routes":{"demo":{"prefix":"/demo","targets":["10.0.0.2 80"]}},"paths":{"/demo":"demo"}}'
    load_list(routes_list(1), static)
    t.yes(store.static_route("demo") == store.static_route("demo"), "the same decoded table")
    local first = store.static_route("demo")
    load_list(routes_list(1, 1), static)
    t.no(store.static_route("demo") == first, "a new version decodes again")
end)

os.remove(file)
t.done()
