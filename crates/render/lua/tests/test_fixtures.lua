-- The routes.json fixtures of gateway-core, loaded by the proxy's loader: it must accept exactly
-- what the Rust reader accepts (crates/core/src/routes_file.rs runs the same files). TCP entries
-- are not checked here: the proxy serves them from the stream config, not from this file.
local t = require("helper")
local fake = require("fake_ngx")
local cjson = require("cjson.safe")
local store = require("clearml_store")

local dir = os.getenv("ROUTES_FIXTURES") or "crates/core/fixtures/routes_json"
local routes = ngx.shared.clearml_routes

local function read(path)
    local f = assert(io.open(path, "rb"))
    local raw = f:read("*a")
    f:close()
    return raw
end

-- Route ids and static route names the loader put in the shared dict.
local function loaded()
    local ids, statics = {}, {}
    for _, key in ipairs(routes:get_keys(0)) do
        local name = key:match("^s:(.*)$")
        if name then
            statics[#statics + 1] = name
        elseif not key:find(":", 1, true) then
            ids[#ids + 1] = key
        end
    end
    return ids, statics
end

local function sorted(list)
    local copy = { unpack(list) }
    table.sort(copy)
    return copy
end

local files = {}
for name in io.popen("ls " .. dir):lines() do
    if name:match("%.json$") then
        files[#files + 1] = name
    end
end
t.test("fixtures are found", function()
    t.yes(#files >= 5, "fixtures in " .. dir)
end)

for _, name in ipairs(files) do
    t.test(name, function()
        local fixture = assert(cjson.decode(read(dir .. "/" .. name)))
        fake.serve_table(fixture.document)
        local ids, statics = loaded()
        t.eq(ids, sorted(fixture.expect.routes), "routes")
        t.eq(statics, sorted(fixture.expect.static), "static routes")
        local refused = #ids == 0 and #statics == 0 and ngx.shared.clearml_router_state:get("version") == nil
        t.eq(store.status().error ~= nil, refused, "a refused document sets the error")
    end)
end

t.done()
